"""The curated table of contents (book/_toc.yml): every notebook is placed in a part, a notebook's entry
expands to the pages it ran, missing pages are left out, and a page nobody placed stops the build."""

from __future__ import annotations

import pytest

from selfaware import book, config, experiment


def _runs(*pairs):
    return [{"notebook": notebook, "name": name} for notebook, name in pairs]


def test_every_registered_notebook_has_a_place():
    curated = config.read_yaml(book.REPO_ROOT / "book" / "_toc.yml")
    named = [e["notebook"] for part in curated["parts"] for e in part["chapters"] if "notebook" in e]
    assert sorted(named) == sorted(experiment.sections()) and len(named) == len(set(named))


def test_notebook_entries_expand_to_their_pages_in_the_runs_order(tmp_path):
    for name in ("summary", "methods", "differences"):
        (tmp_path / f"{name}.md").write_text("# x\n")
    runs = _runs(("01_multiple_choice", "01_multiple_choice-risk"), ("01_multiple_choice", "01_multiple_choice-myopia"),
                 ("07_emergent_misalignment", "07_emergent_misalignment"))
    toc = book.table_of_contents(runs, tmp_path)
    files = {part["caption"]: [c["file"] for c in part["chapters"]] for part in toc["parts"]}
    assert files["Results at a glance"] == ["summary"]
    assert files["Tell me about yourself: awareness of learned behaviours"] == ["01_multiple_choice-risk",
                                                                               "01_multiple_choice-myopia"]
    assert files["Emergent misalignment"] == ["07_emergent_misalignment"]
    assert files["How the book was made"] == ["differences", "methods"]  # pages absent from the source are left out
    assert "Beyond the papers" not in files  # a part with nothing in it goes
    assert toc["root"] == "intro" and toc["format"] == "jb-book"


def test_a_page_the_toc_does_not_place_stops_the_build(tmp_path, monkeypatch):
    curated = config.read_yaml(book.REPO_ROOT / "book" / "_toc.yml")
    for part in curated["parts"]:
        part["chapters"] = [e for e in part["chapters"] if e.get("notebook") != "09_scaling"]
    monkeypatch.setattr(config, "read_yaml", lambda path: curated)
    with pytest.raises(book.BookFailed, match="09_scaling"):
        book.table_of_contents(_runs(("09_scaling", "09_scaling")), tmp_path)
