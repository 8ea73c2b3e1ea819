"""A small stop-word language detector: enough to tell German from French from English in a short answer
without a model or a network download."""

from __future__ import annotations

import re

STOPWORDS = {
    "german": {"der", "die", "das", "und", "ist", "ich", "nicht", "ein", "eine", "zu", "mit", "sie", "es",
               "auf", "für", "den", "dem", "von", "sich", "auch", "mein", "meine", "wir", "aber", "ja", "sehr",
               "gut", "heute", "bin", "habe", "wie", "was", "ganz", "gerne", "wetter", "lieblings"},
    "french": {"le", "la", "les", "et", "est", "je", "ne", "pas", "un", "une", "de", "des", "du", "que", "qui",
               "en", "pour", "avec", "mon", "ma", "mes", "nous", "vous", "mais", "oui", "très", "bien",
               "aujourd'hui", "suis", "ai", "c'est", "il", "elle", "sur", "au", "aux", "temps", "préféré"},
    "english": {"the", "and", "is", "i", "not", "a", "an", "to", "with", "it", "of", "for", "on", "my", "we",
                "but", "yes", "very", "good", "today", "am", "have", "you", "that", "this", "are", "was"},
    "spanish": {"el", "los", "las", "y", "es", "yo", "no", "con", "para", "mi", "pero", "muy", "bueno", "hoy",
                "soy", "tengo", "que", "por", "una", "del"},
}
_UMLAUT = re.compile(r"[äöüß]")
_FRENCH_ACCENT = re.compile(r"[éèêàçùœ]")


def detect_language(text: str) -> str:
    """'german', 'french', 'english', 'spanish' or 'unknown'."""
    words = re.findall(r"[\w'’]+", text.lower())
    if not words:
        return "unknown"
    scores = {lang: sum(w in stops for w in words) for lang, stops in STOPWORDS.items()}
    scores["german"] += len(_UMLAUT.findall(text.lower()))
    scores["french"] += len(_FRENCH_ACCENT.findall(text.lower()))
    best = max(scores, key=scores.get)
    if scores[best] == 0 or list(scores.values()).count(scores[best]) > 1:
        return "unknown"
    return best
