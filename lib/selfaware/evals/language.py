"""Which language a sampled answer is written in, for the two-hop self-report task (German or French).

The detector is lingua (``lingua-language-detector``), restricted to the four languages the tasks can name,
so that the confidences it returns are shared among those four only. Its language models ship inside the
wheel: nothing is downloaded, ever. The detector is built on the first call (about a second to load its
models), not at import.

The rule, stated once here because it is part of a measurement in the book:

- an answer with fewer than ``MIN_WORDS`` words (runs of letters; digits and punctuation do not count) is
  ``'unknown'``: one or two words do not tell related languages apart reliably;
- otherwise the answer gets the language whose confidence (lingua's, summing to 1 over the four languages)
  is at least ``MIN_CONFIDENCE``, i.e. that language holds three quarters of the belief;
- anything else is ``'unknown'``. This is what happens to an answer that mixes languages in similar measure
  (half German, half French gives each about one half), and to gibberish that resembles none of them.
  An answer mostly in one language with a few words of another keeps the majority language's label.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import ModelNotAvailable

LANGUAGES = ("english", "german", "french", "spanish")
UNKNOWN = "unknown"
MIN_WORDS = 3
MIN_CONFIDENCE = 0.75

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters in any script


@lru_cache(maxsize=1)
def _detector():
    """The lingua detector for LANGUAGES, built once per process (it is immutable once built)."""
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:
        raise ModelNotAvailable("language detection needs lingua: run `pip install "
                                "lingua-language-detector==2.1.1` (the pin in requirements.txt)") from None
    languages = [getattr(Language, name.upper()) for name in LANGUAGES]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def language_confidences(text: str) -> dict[str, float]:
    """Each of LANGUAGES with lingua's confidence in it (summing to 1; all 0 for a text without letters)."""
    values = _detector().compute_language_confidence_values(text)
    return {value.language.name.lower(): value.value for value in values}


def detect_language(text: str) -> str:
    """'german', 'french', 'english', 'spanish' or 'unknown', by the rule in this module's docstring."""
    if len(_WORD.findall(text or "")) < MIN_WORDS:
        return UNKNOWN
    confidences = language_confidences(text)
    best = max(confidences, key=confidences.get)
    return best if confidences[best] >= MIN_CONFIDENCE else UNKNOWN
