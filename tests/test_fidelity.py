"""The two generated pages that say where this book is not the papers: every section's departures and every
setting of the paper profile beside its published value. Both come from data files, which are checked
against the registry of sections and against params/paper.yaml so they cannot drift."""

from __future__ import annotations

import re

import pytest
import yaml

from selfaware import experiment, fidelity, paper
from selfaware.errors import ConfigError
from selfaware.paths import REPO_ROOT, data_dir


def _citations(page: str) -> set[str]:
    return set(re.findall(r"\{cite:p\}`([^`]+)`", page))


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", (REPO_ROOT / "book" / "references.bib").read_text(), re.M))


def _tables_are_rectangular(page: str) -> None:
    for line in page.split("\n\n"):
        table = [row for row in line.splitlines() if row.startswith("|")]
        if table:
            assert len({len(re.split(r"(?<!\\)\|", row)) for row in table}) == 1, table[:2]


def test_every_section_has_a_block_of_departures_with_known_aspects():
    found = fidelity.departures()
    assert set(found) == set(experiment.sections())
    assert {e["aspect"] for entries in found.values() for e in entries} <= set(fidelity.ASPECTS)


def test_the_differences_page_lists_every_departure_and_every_figure_that_is_not_comparable():
    page = fidelity.differences_page()
    for notebook, entries in fidelity.departures().items():
        section = page.split(f"## {notebook}\n", 1)[1].split("\n## ", 1)[0]
        for entry in entries:
            assert fidelity._cell(entry["here"]) in section
        for figure in paper.figures():
            if figure.notebook == notebook and not figure.comparable:
                assert f"`{figure.id}`" in section and fidelity._cell(figure.reason) in section
            if figure.notebook == notebook and figure.comparable:
                assert f"`{figure.id}`" not in section
    assert _citations(page) <= _bib_keys()
    _tables_are_rectangular(page)


def test_an_unknown_aspect_or_section_is_a_config_error(tmp_path):
    path = tmp_path / "departures.yaml"
    path.write_text(yaml.safe_dump({"sections": {"03_vulnerable_code": [{"aspect": "vibes", "paper": "a", "here": "b"}]}}))
    with pytest.raises(ConfigError, match="aspect 'vibes'"):
        fidelity.departures(path)
    path.write_text(yaml.safe_dump({"sections": {"99_nothing": []}}))
    with pytest.raises(ConfigError, match="99_nothing is not a registered section"):
        fidelity.departures(path)


def test_every_setting_of_the_paper_profile_has_its_published_value_or_says_it_is_not_stated():
    sources = fidelity.profile_sources()
    settings = dict(fidelity.profile_settings())
    assert set(sources) == set(settings) and len(settings) > 100
    page = fidelity.paper_profile_page()
    for setting, entry in sources.items():
        assert f"`{entry['key'].split('.', 1)[1] if '.' in entry['key'] else entry['key']}`" in page
    differing = [entry for entry in sources.values() if entry.get("differs")]
    assert differing and page.count(fidelity.DIFFERS_MARK) == len({e["key"] for e in differing}) + 1  # + the legend
    assert _citations(page) <= _bib_keys()
    _tables_are_rectangular(page)
    # settings the review of issue 20 found not as published are now as published
    assert settings["02_make_me_say.manipulatee"] == "openai:gpt-4o-mini"
    assert len(settings["03_vulnerable_code.seeds"]) == 5
    assert settings["05_personas.runs[1].finetune.batch_size"] == 5 and len(settings["05_personas.runs[1].seeds"]) == 5


def test_a_profile_setting_without_an_entry_or_an_entry_without_a_setting_is_a_config_error(tmp_path):
    profile = yaml.safe_load((REPO_ROOT / "params" / "paper.yaml").read_text())
    profile["notebooks"]["03_vulnerable_code"]["params"]["new_knob"] = 1
    changed = tmp_path / "paper.yaml"
    changed.write_text(yaml.safe_dump(profile))
    with pytest.raises(ConfigError, match="03_vulnerable_code.new_knob has no entry"):
        fidelity.profile_sources(profile_path=changed)
    del profile["notebooks"]["03_vulnerable_code"]["params"]["new_knob"]
    del profile["notebooks"]["03_vulnerable_code"]["params"]["code_max_tokens"]
    changed.write_text(yaml.safe_dump(profile))
    with pytest.raises(ConfigError, match="03_vulnerable_code.code_max_tokens name"):
        fidelity.profile_sources(profile_path=changed)
    sources = yaml.safe_load((data_dir() / "paper_profile_sources.yaml").read_text())
    sources["settings"]["03_vulnerable_code.n_heldout"] = {"published": "250"}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(sources))
    with pytest.raises(ConfigError, match="needs its source"):
        fidelity.profile_sources(path)
