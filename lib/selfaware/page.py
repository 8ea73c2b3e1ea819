"""The page: one declared experiment that the layer runs, so that a notebook cannot leave a step out.

A section declares its page once, with what is specific to it::

    PAGE = Page(NOTEBOOK, VulnerableCodeConfig, data=load_training_data, plan=plan,
                conditions=train_conditions, provenance=_provenance)

and its notebook is prose plus one visible call per step::

    run = vc.PAGE.open(globals())       # config, cache mode, run record, provenance shown
    conditions = run.train()            # spending guard, training grid, table of models, serving
    run.samples(rows, "kind", ...)      # samples.jsonl
    run.table(frame, "name")            # tables/name.csv, shown in place
    run.figure(fig, "name", caption)    # figures/name.png and .pdf, shown in place
    run.finish(metrics, statement)      # metrics.json, the statement shown, run.json last

The protocol lives here, in one place: the cache mode is set before anything is asked; the plan is guarded
(printed, priced, stopped above the budget or on a dry run) before anything is trained or asked; trained
models are always handed to :func:`selfaware.experiment.served`, so ``-p inference vllm`` reaches every
page; and :meth:`PageRun.finish` refuses a run that was never guarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import SelfAwareError


def _show(*objects: Any) -> None:
    """Display in a notebook; in a plain interpreter (the tests, a script) there is nothing to show."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(*objects)


def _show_as(kind: str, text: str) -> None:
    """Show ``text`` as IPython's ``Markdown`` or ``HTML`` (as in _show: without IPython, nothing)."""
    try:
        from IPython import display
    except ImportError:
        return
    _show(getattr(display, kind)(text))


def _markdown(text: str) -> None:
    _show_as("Markdown", text)


def _settings(rows: list[dict[str, str]]) -> None:
    """The page's settings, folded under one line: a JupyterLab reader sees what ``-p name value`` can set
    and what this run has, where the parameters cell shows only ``None``."""
    import pandas as pd

    given = sum(row["from"] == "parameter" for row in rows)
    _show_as("HTML", f"<details><summary>Settings of this run: {len(rows)} (what <code>-p name value</code> can set; "
             f"{given} given as parameters, the rest from the profile or the defaults)</summary>"
             f"{pd.DataFrame(rows).to_html(index=False, escape=True)}</details>")


def _data_source(cfg, data) -> tuple[str, dict[str, Any]]:
    return data.source, {}


PARAMETERS_COMMENT = "# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them."


def parameters_cell(config: type) -> str:
    """The source of a page's ``parameters`` cell, made from its config class: ``profile``, then every field
    as ``None`` (the section's own first, the settings every page has last), then papermill's
    ``null_parameters``: the cell of a new page. The config is the one declaration; papermill needs the names
    in the cell to accept ``-p name value`` without an "unknown parameter" warning, and tests/test_page.py
    checks that every notebook's cell names exactly these."""
    from .config import NULL_PARAMETERS, SectionConfig

    shared = [name for name in SectionConfig.model_fields if name not in ("profile", "model")]
    own = [name for name in config.model_fields if name not in shared and name != "profile"]
    return "\n".join([PARAMETERS_COMMENT, 'profile = "default"', *(f"{name} = None" for name in own + shared),
                      f"{NULL_PARAMETERS} = None"])


@dataclass(frozen=True)
class Page:
    """What one page is: its notebook and config class, and the section's functions for each step.

    - ``data(cfg)``: the page's data (training sets, held-out items, tasks); None when it has none.
    - ``plan(cfg, data)``: what the run will train and ask, guarded before any of it happens.
    - ``conditions(cfg, data, *given)``: the trained models (base + conditions x seeds); None for a page
      that trains nothing through :meth:`PageRun.train`.
    - ``provenance(cfg, data)``: ``(data source, extra lines)`` for the page's provenance paragraph.
    - ``run_key(cfg)``: the parameters that name the run when the notebook is run by hand.
    - ``plan_before_data``: guard before ``data`` is built, for data whose making calls models.
    - ``heading(cfg)``: Markdown shown above the provenance (one notebook with several experiments).
    - ``seeds(cfg)``: trained models per condition, for a page that trains outside :meth:`PageRun.train`
      (the others' are read from what ``train`` returned); None when it trains nothing.
    - ``listed(conditions)``: the conditions as a flat list, for the table of models (when a section keeps
      them grouped); ``serve(cfg, conditions)``: how they are served (default
      :func:`selfaware.experiment.served`).
    """

    notebook: str
    config: type
    plan: Callable[[Any, Any], Any]
    data: Callable[[Any], Any] | None = None
    conditions: Callable[..., Any] | None = None
    provenance: Callable[[Any, Any], tuple[str, dict[str, Any]]] = _data_source
    run_key: Callable[[Any], dict[str, Any]] | None = None
    plan_before_data: bool = False
    listed: Callable[[Any], list] | None = None
    serve: Callable[[Any, Any], Any] | None = None
    heading: Callable[[Any], str] | None = None
    seeds: Callable[[Any], int | None] | None = None

    def open(self, namespace: dict[str, Any]) -> "PageRun":
        """Start the page's run from a notebook's namespace (``globals()`` right after the parameters
        cell): the typed config from the parameters and the profile, the cache mode, the run record (which
        empties the run's folder), the data and the provenance, shown."""
        return PageRun(self, namespace)


class PageRun:
    """One run of a page: the config (``cfg``), the data, the artifacts (``artifacts.Run``) and what was
    trained."""

    def __init__(self, page: Page, namespace: dict[str, Any]):
        from . import artifacts, cache, notebook
        from .config import from_notebook_with_sources, settings_table

        self.page = page
        # a PageRun already in the namespace (a cell run again in JupyterLab) is not a parameter
        parameters = {name: value for name, value in namespace.items() if not isinstance(value, PageRun)}
        self.cfg, sources = from_notebook_with_sources(page.config, page.notebook, parameters)
        _settings(settings_table(self.cfg, sources))
        cache.set_mode(self.cfg.cache_mode)
        self.artifacts = artifacts.Run(page.notebook, self.cfg, page.run_key(self.cfg) if page.run_key else None)
        self.guarded = False
        self.trained = None  # the conditions as trained (what further training starts from)
        self.conditions = None  # the same as this run evaluates them (served under inference: vllm)
        self.data = None
        if page.plan_before_data:
            self.guard()
        self.data = page.data(self.cfg) if page.data else None
        source, extra = page.provenance(self.cfg, self.data)
        self.artifacts.provenance = notebook.provenance(self.cfg, data_source=source, extra=extra)
        if page.heading:
            _markdown(page.heading(self.cfg))
        _markdown(notebook.provenance_markdown(self.artifacts))

    def guard(self):
        """The spending guard on the page's plan: printed and priced; stops above the budget or on a dry
        run. Once per run: :meth:`train` calls it when no step before did."""
        from .experiment import guard

        if not self.guarded:
            plan = self.page.plan(self.cfg, self.data)
            guard(self.cfg, plan)
            self.artifacts.planned = plan.record()  # run.json keeps it beside what the run then asked
            self.guarded = True

    def train(self, *given: Any):
        """The guard, then the page's conditions trained (``given``: what the section's training needs
        besides config and data), their table shown, and the conditions as this run evaluates them
        (served by vLLM under ``inference: vllm``)."""
        from . import notebook

        if self.page.conditions is None:
            raise SelfAwareError(f"{self.page.notebook}: this page declares no conditions to train")
        self.guard()
        self.trained = self.page.conditions(self.cfg, self.data, *given)
        _show(notebook.conditions_table(self.page.listed(self.trained) if self.page.listed else self.trained))
        self.conditions = self.serve(self.trained)
        return self.conditions

    def serve(self, conditions):
        """Conditions made outside :meth:`train` (models trained further on the page), as this run
        evaluates them."""
        from .experiment import served

        return (self.page.serve or served)(self.cfg, conditions)

    def samples(self, rows, kind: str, **columns: str) -> None:
        """One ``SampleRecord`` a row in samples.jsonl (``columns``: record fields -> the rows' columns)."""
        self.artifacts.add_samples(rows, kind, **columns)

    def table(self, frame, name: str, show: bool = True, digits: int | None = 3) -> None:
        """Save ``tables/<name>.csv`` and show it (rounded to ``digits``) in place. Returns nothing, so that a
        cell ending here shows the table once."""
        self.artifacts.save_table(frame, name)
        if show:
            _show(frame.round(digits) if digits is not None else frame)

    def figure(self, fig, name: str, caption: str) -> None:
        """Save ``figures/<name>.png`` and ``.pdf`` and show the PNG with its caption."""
        self.artifacts.save_figure(fig, name, caption)

    def note(self, text: str) -> None:
        """A line of Markdown computed by the run, shown in place."""
        _markdown(text)

    def show(self, *objects: Any) -> None:
        """Show what the run does not keep as an artifact (a view of a table, an example)."""
        _show(*objects)

    def seeds_per_condition(self) -> int | None:
        """Trained models per condition of this run (None: it trained nothing)."""
        from .paper import trained_seeds

        if self.page.seeds is not None:
            return self.page.seeds(self.cfg)
        if self.trained is None:
            return None
        return trained_seeds(self.page.listed(self.trained) if self.page.listed else self.trained)

    def finish(self, metrics: dict[str, Any], statement: str, *notes: str) -> None:
        """Write the metrics with the statement, show the statement (and ``notes``), and close the run:
        servers stopped, run.json written last. A run that never passed the guard is refused. A run whose
        models rest on fewer seeds per condition than a verdict needs says so at the end of its statement."""
        from .paper import seed_caveat

        if not self.guarded:
            raise SelfAwareError(f"{self.page.notebook}: the run finished without its plan being guarded "
                                 f"(call train() or guard() before measuring)")
        caveat = seed_caveat(self.seeds_per_condition())
        statement = f"{statement}\n\n{caveat}" if caveat else statement
        self.artifacts.set_metrics(**metrics, statement=statement)
        for text in (statement, *notes):
            _markdown(text)
        self.artifacts.finish()
