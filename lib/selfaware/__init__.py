"""selfaware: the library behind the book on what LLMs know about their own learned behaviour.

Nothing happens at import: no model is loaded, no client created, no key read.
"""

__version__ = "0.1.0"
