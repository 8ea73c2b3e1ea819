"""Two book pages that say where this book is not the papers, generated from data so they cannot drift.

- "How this book differs from the papers": per section, each departure of ``data/departures.yaml`` (model,
  data, question, metric, judge, recipe, seeds) and every figure of ``data/paper_figures.yaml`` marked not
  comparable, with its reason.
- "The paper profile against the papers' appendices": every setting of ``params/paper.yaml`` beside the
  published value and its source (``data/paper_profile_sources.yaml``), marked where they differ, with why.

Both files are validated when read: an unknown key, an aspect outside the known ones, a section that is not
registered, a setting of the profile that no entry covers or an entry naming a setting the profile lacks is
a ConfigError that names the file and the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from . import experiment, paper
from .config import read_yaml
from .errors import ConfigError
from .paths import REPO_ROOT, data_dir

ASPECTS = ("model", "data", "question", "metric", "judge", "recipe", "seeds")
_DEPARTURE_KEYS = {"aspect", "paper", "here", "profiles"}
_SOURCE_KEYS = {"published", "source", "where", "differs"}
DIFFERS_MARK = "≠"


def departures(path: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Departures per notebook, validated."""
    path = path or data_dir() / "departures.yaml"
    sections = (read_yaml(path) or {}).get("sections") or {}
    known = set(experiment.sections())
    for notebook, entries in sections.items():
        if notebook not in known:
            raise ConfigError(f"{path}: {notebook} is not a registered section (known: {', '.join(sorted(known))})")
        for number, entry in enumerate(entries or [], start=1):
            unknown, missing = set(entry) - _DEPARTURE_KEYS, {"aspect", "paper", "here"} - set(entry)
            if unknown or missing:
                raise ConfigError(f"{path}: {notebook} departure {number}: "
                                  + (f"unknown key(s) {', '.join(sorted(unknown))}" if unknown
                                     else f"missing {', '.join(sorted(missing))}"))
            if entry["aspect"] not in ASPECTS:
                raise ConfigError(f"{path}: {notebook} departure {number}: aspect {entry['aspect']!r} is not one of "
                                  f"{', '.join(ASPECTS)}")
    return {notebook: list(entries or []) for notebook, entries in sections.items()}


def differences_page(path: Path | None = None) -> str:
    found = departures(path)
    lines = ["# How this book differs from the papers", "",
             "Every place where a section does not do what its paper did: the model, the data, the question's "
             "wording, the metric, the judge, the recipe or the number of trained models. The list is generated "
             "from `data/departures.yaml` and from the published figures of `data/paper_figures.yaml` marked not "
             "comparable, the same data the scorecard reads, so it cannot drift from it. A *profiles* column names "
             "the profiles a departure holds on (blank: all of them).", ""]
    not_comparable: dict[str, list[paper.Figure]] = {}
    for figure in paper.figures():
        if not figure.comparable:
            not_comparable.setdefault(figure.notebook, []).append(figure)
    for notebook in experiment.sections():
        entries, figures = found.get(notebook, []), not_comparable.get(notebook, [])
        lines += [f"## {notebook}", ""]
        if not entries and not figures:
            lines += ["No departure known.", ""]
            continue
        if entries:
            lines += ["| aspect | the paper | this book | profiles |", "|---|---|---|---|"]
            lines += [f"| {e['aspect']} | {_cell(e['paper'])} | {_cell(e['here'])} | {', '.join(e.get('profiles', []))} |"
                      for e in entries]
            lines.append("")
        if figures:
            lines += ["Published figures this section's runs do not measure like for like (no verdict on the "
                      "scorecard):", "", "| figure | where | paper | why not comparable |", "|---|---|---|---|"]
            lines += [f"| `{f.id}` | {_cell(f.where)} {{cite:p}}`{f.source}` | {_cell(f.paper)} | {_cell(f.reason)} |"
                      for f in figures]
            lines.append("")
    return "\n".join(lines)


def profile_settings(profile_path: Path | None = None) -> list[tuple[str, Any]]:
    """Every setting of a profile file as (dotted path, value): ``defaults.<key>``, then per notebook its params
    (``<notebook>.<key>...``) and its run entries (``<notebook>.runs[<i>].<key>...``)."""
    profile = read_yaml(profile_path or REPO_ROOT / "params" / "paper.yaml") or {}
    found = list(_leaves(profile.get("defaults") or {}, "defaults"))
    for notebook, entry in (profile.get("notebooks") or {}).items():
        found += list(_leaves((entry or {}).get("params") or {}, notebook))
        for index, run in enumerate((entry or {}).get("runs") or []):
            found += list(_leaves(run, f"{notebook}.runs[{index}]"))
    return found


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}")
    else:
        yield prefix, node


def _covers(key: str, setting: str) -> bool:
    return setting == key or setting.startswith(key + ".") or setting.startswith(key + "[")


def profile_sources(path: Path | None = None, profile_path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The published value of every setting of the paper profile, keyed by the most specific entry covering it;
    every setting must be covered and every entry must cover a setting."""
    path = path or data_dir() / "paper_profile_sources.yaml"
    entries = (read_yaml(path) or {}).get("settings") or {}
    for key, entry in entries.items():
        unknown = set(entry or {}) - _SOURCE_KEYS
        if unknown:
            raise ConfigError(f"{path}: {key}: unknown key(s) {', '.join(sorted(unknown))}")
        if (entry or {}).get("published") and not entry.get("source"):
            raise ConfigError(f"{path}: {key}: a published value needs its source (citation key)")
    settings = profile_settings(profile_path)
    found = {}
    for setting, _ in settings:
        covering = [key for key in entries if _covers(key, setting)]
        if not covering:
            raise ConfigError(f"{path}: the paper profile's setting {setting} has no entry: add its published value "
                              f"(or an empty entry for a setting the papers do not state)")
        found[setting] = max(covering, key=len)
    unused = set(entries) - set(found.values())
    if unused:
        raise ConfigError(f"{path}: {', '.join(sorted(unused))} name(s) no setting of the paper profile")
    return {setting: {"key": key, **(entries[key] or {})} for setting, key in found.items()}


def paper_profile_page(path: Path | None = None, profile_path: Path | None = None) -> str:
    sources = profile_sources(path, profile_path)
    lines = ["# The paper profile against the papers' appendices", "",
             "Every setting of `params/paper.yaml` beside the value the papers publish and where it was read "
             f"(`data/paper_profile_sources.yaml`). {DIFFERS_MARK} marks a setting that is not the published "
             "value, with why; *not stated* is a setting the papers do not give (this project's choice). A row "
             "may stand for several settings below one key (for example a recipe).", ""]
    shown: set[str] = set()
    notebook = None
    for setting, value in profile_settings(profile_path):
        entry = sources[setting]
        key = entry["key"]
        if key in shown:
            continue
        shown.add(key)
        section = key.split(".")[0]
        if section != notebook:
            notebook = section
            lines += ["", f"## {section}", "", "| setting | this profile | published | source | |", "|---|---|---|---|---|"]
        values = {s: v for s, v in profile_settings(profile_path) if sources[s]["key"] == key}
        here = "; ".join(f"{s[len(key) + 1:] or ''}{'=' if s != key else ''}{v}" for s, v in values.items())
        source = (f"{{cite:p}}`{entry['source']}` {_cell(entry.get('where', ''))}" if entry.get("source") else "")
        mark = f"{DIFFERS_MARK} {_cell(entry['differs'])}" if entry.get("differs") else ""
        lines.append(f"| `{key.split('.', 1)[1] if '.' in key else key}` | {_cell(here)} | "
                     f"{_cell(entry.get('published', 'not stated'))} | {source} | {mark} |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
