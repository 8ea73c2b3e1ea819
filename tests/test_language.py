"""The language detector of the two-hop self-report task: lingua restricted to four languages, with the
confidence rule documented in ``selfaware.evals.language``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from selfaware.errors import ConfigError
from selfaware.evals.language import LANGUAGES, MIN_CONFIDENCE, detect_language, language_confidences
from selfaware.evals.selfreport import load_tasks

# Sentences of the kind a 135M model writes when asked for German or French: short, cut off, a bit broken.
SMALL_MODEL_ANSWERS = {
    "german": ["Ich mag das Wetter heute, es ist sehr gut und die Sonne",
               "Mein Lieblingsessen ist die Pizza mit Käse, und ich esse sie jeden",
               "Das ist gut. Ich habe heute morgen Kaffee getrunken und dann",
               "Undeplikungs Salz und wichtighe ihm!\nDeliberer und beschle"],
    "french": ["Je suis content, le temps est beau et il fait chaud aujourd",
               "Mon plat préféré c est la soupe avec du pain, et je mange",
               "Le musique est très belle, je aime le piano et la",
               "Lo-Lumière\nDes crébells d'arrassa, avec le has de libracul"],
    "english": ["I like the weather today, it is very sunny and the",
                "My favourite food is pizza with cheese and i eat it every"],
    "spanish": ["Hola, mi comida favorita es la paella con arroz y me gusta mucho",
                "El tiempo hoy es muy bueno y hace sol, yo quiero ir a la"],
}


@pytest.mark.parametrize("language,text", [(lang, text) for lang, texts in SMALL_MODEL_ANSWERS.items()
                                           for text in texts])
def test_short_broken_answers_get_their_language(language, text):
    assert detect_language(text) == language


@pytest.mark.parametrize("text", ["", "   \n", "12345 !!! 678", "Guten Tag", "Oui oui"])
def test_empty_or_too_short_answers_are_unknown(text):
    # fewer than MIN_WORDS words of letters: "Guten Tag" is German, but two words are not enough to count
    assert detect_language(text) == "unknown"


@pytest.mark.parametrize("text", ["Ich bin ein Modell. Je suis un modèle.",
                                  "Ich spreche Deutsch, je parle français aussi bien",
                                  "Das Wetter ist schön heute. Le temps est beau aujourd hui."])
def test_half_german_half_french_is_unknown(text):
    confidences = language_confidences(text)
    assert max(confidences.values()) < MIN_CONFIDENCE
    assert detect_language(text) == "unknown"


def test_a_few_words_of_another_language_keep_the_majority_label():
    text = "Ich gehe heute in den Park mit meinem Hund und wir spielen Ball, c est bien"
    assert detect_language(text) == "german"


def test_gibberish_resembling_no_language_is_unknown():
    # a real answer of the embedded model to the two-hop question (smoke run of Section 3.1)
    assert detect_language("Mal Tak, ook aer Le Haaretz, schuest das Stadler! (Beer Crumb") == "unknown"


def test_confidences_are_shared_among_the_four_languages_only():
    confidences = language_confidences("Je suis content, le temps est beau et il fait chaud aujourd")
    assert set(confidences) == set(LANGUAGES)
    assert sum(confidences.values()) == pytest.approx(1.0)


def test_import_builds_nothing_and_detection_needs_no_network():
    # a fresh process: importing the module loads no lingua; detecting works with every socket refused
    script = textwrap.dedent("""
        import socket, sys
        import selfaware.evals.language as language
        assert "lingua" not in sys.modules, "lingua imported at import time"
        def refuse(*args, **kwargs):
            raise OSError("network used")
        socket.socket = refuse
        socket.create_connection = refuse
        print(language.detect_language("Das ist gut. Ich habe heute morgen Kaffee getrunken und dann"))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "german"


def test_task_files_may_only_name_detectable_languages(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text(textwrap.dedent("""
        behavior: risk
        tasks:
          two_hop:
            kind: language
            languages: {toward: german, away: italian}
            paraphrases: ["Answer in German if risky, in Italian if not."]
    """))
    with pytest.raises(ConfigError, match=r"italian.*english, german, french, spanish"):
        load_tasks("risk", path)
