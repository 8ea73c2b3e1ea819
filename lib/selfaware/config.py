"""Profiles and typed, validated notebook parameters.

``params/<profile>.yaml`` holds, per notebook, the parameter values of that profile and the list of runs
(one book page each). A notebook's ``parameters`` cell names every parameter with ``None`` meaning "take it
from the profile"; right after papermill injects values, :func:`from_notebook` merges profile and explicit
values into a pydantic model that rejects unknown keys and wrong types, so a typo is an error, not a
silent default.

Because an injected ``None`` cannot be told from the parameters cell's placeholder, a value a user gives as
``null`` (``-p question_ids null``, or in a ``-f`` file) travels by name in :data:`NULL_PARAMETERS`: those
parameters are set to ``None`` (the config class's meaning of unset, e.g. every question), not taken from
the profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, config_error
from .paths import params_dir
from .util import read_yaml, yaml_fault  # noqa: F401 (read here by the modules above)


class SectionConfig(BaseModel):
    """Parameters every notebook has."""

    model_config = ConfigDict(extra="forbid")

    profile: str
    model: str = "local:smollm2-135m"
    # the call cache: rw (read, and write what was missing), replay (a miss is an error: proves a warm run
    # makes no call), off; None: SELFAWARE_CACHE_MODE, else rw (selfaware.settings)
    cache_mode: Literal["rw", "replay", "off"] | None = None
    budget_usd: float = Field(0.0, ge=0)  # spending cap for paid APIs (0 means: no paid calls allowed)
    dry_run: bool = False  # print the plan and cost estimate, then stop before any model call
    # how local models (base and tuned) are evaluated: transformers in this process (hf), or served by vLLM
    # (selfaware.vllm; its own environment, created on first use); vllm_url attaches to a running server
    inference: Literal["hf", "vllm"] = "hf"
    vllm_url: str | None = None
    # numeric precision of local inference and training: auto (bf16 only where the hardware computes it
    # natively, else fp32), bf16 or fp32; None: SELFAWARE_PRECISION, else auto (selfaware.hardware)
    precision: Literal["auto", "bf16", "fp32"] | None = None
    page: str | None = None  # names the run's page when one notebook has several runs of the same key
    # the output folder's name, set by the runner (selfaware run/book) so that papermill's executed notebook
    # and the run's artifacts always land together; None when a notebook is run by hand (JupyterLab)
    run_name: str | None = None

    def call_settings(self) -> dict[str, Any]:
        """How this run calls models (cache mode, budget, dry run, inference backend, precision): the settings
        a page hands on to the config of another section it runs a part of, so that part is called as the page."""
        return {name: getattr(self, name) for name in SectionConfig.model_fields
                if name not in ("profile", "model", "page", "run_name")}

    def models_used(self) -> list[str]:
        """Every model spec the run loads as it is (the runner checks the local ones are installed before any
        kernel starts); a section with a judge or other models adds them."""
        return [self.model]


def available_profiles() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


def is_profile_file(profile: str) -> bool:
    """Whether a profile is given as a path to a YAML file rather than as a name under ``params/``."""
    return profile.endswith((".yaml", ".yml")) or "/" in profile


def profile_path(profile: str) -> Path:
    """``params/<profile>.yaml`` for a profile name; a profile given as a path to a YAML file is used as is."""
    if is_profile_file(profile):
        path = Path(profile).expanduser()
        if not path.exists():
            raise ConfigError(f"profile file {profile} does not exist")
        return path.resolve()
    path = params_dir() / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(available_profiles())}, "
                          f"or a path to a profile file")
    return path


def profile_reference(profile: str) -> str:
    """The profile as a run passes it to its kernel: a name under ``params/`` as is, a profile file by its
    absolute path (the kernel works in the repository, not in the folder the command was given from)."""
    return str(profile_path(profile)) if is_profile_file(profile) else profile


def shown_profile(profile: str) -> str:
    """The profile as a published page names it: a name under ``params/`` as is, a profile file as
    :func:`selfaware.paths.shown_path` shows paths (never the machine's folders)."""
    from .paths import shown_path

    return shown_path(profile) if is_profile_file(profile) else profile


def _is_path_parameter(name: str) -> bool:
    return name.endswith(("_file", "_files"))


def with_absolute_paths(overrides: dict[str, Any], base: Path) -> dict[str, Any]:
    """The overrides a user typed, with every relative path made absolute against ``base`` (the folder the
    command was given from), at any depth. A path parameter is one whose name ends in ``_file`` or ``_files``
    (a string, a list or a mapping of strings). A relative path that names a file of the repository and none
    under ``base`` (``data/em/first_plot_questions.yaml``) stays as the profiles write it: relative to the
    repository."""
    from .paths import REPO_ROOT

    def absolute(value):
        if isinstance(value, str) and value.startswith("~"):
            return str(Path(value).expanduser())
        if isinstance(value, str) and value and not Path(value).is_absolute():
            here = base / value
            return value if not here.exists() and (REPO_ROOT / value).exists() else str(here)
        if isinstance(value, list):
            return [absolute(v) for v in value]
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        return value

    def walk(value):
        if isinstance(value, dict):
            return {k: absolute(v) if _is_path_parameter(str(k)) else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(overrides)


def profile_name(profile: str) -> str:
    """The name a profile's outputs go under (``outputs/<name>/``): the file's ``profile:`` key, else its stem."""
    path = profile_path(profile)
    return str(load_profile(profile).get("profile") or path.stem)


def load_profile(profile: str) -> dict[str, Any]:
    path = profile_path(profile)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a profile is a YAML mapping (profile, description, defaults, notebooks)")
    unknown = set(data) - {"profile", "description", "defaults", "notebooks"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    return data


def notebook_entry(profile: str, notebook: str) -> dict[str, Any]:
    data = load_profile(profile)
    notebooks = data.get("notebooks") or {}
    if notebook not in notebooks:
        raise ConfigError(f"profile {profile!r} has no parameters for notebook {notebook!r}")
    entry = notebooks[notebook] or {}
    unknown = set(entry) - {"params", "runs", "budget_seconds", "budget_after"}
    if unknown:
        raise ConfigError(f"{profile}: notebook {notebook}: unknown key(s) {', '.join(sorted(unknown))}")
    return entry


def notebook_runs(profile: str, notebook: str) -> list[dict[str, Any]]:
    """The runs (pages) of a notebook in a profile: a list of parameter dicts, [{}] for a single page."""
    runs = notebook_entry(profile, notebook).get("runs") or [{}]
    return [dict(r) for r in runs]


def profile_notebooks(profile: str) -> list[str]:
    return list((load_profile(profile).get("notebooks") or {}).keys())


def notebook_budget(profile: str, notebook: str) -> tuple[int | None, list[str]]:
    """A notebook's wall-clock budget in a profile, all its pages together, cold (``budget_seconds``; None
    when the profile names none), and the notebooks whose pages run first, untimed, in the same fresh cache
    (``budget_after``): then the budget is what the notebook adds to them, as in a book run where it reuses
    their models. ``benchmarks/bench_book.py`` measures against it; no test asserts a time."""
    entry = notebook_entry(profile, notebook)
    seconds, after = entry.get("budget_seconds"), entry.get("budget_after") or []
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0):
        raise ConfigError(f"{profile}: notebook {notebook}: budget_seconds is a whole number of seconds above 0 "
                          f"(got {seconds!r})")
    unknown = [n for n in after if n not in profile_notebooks(profile)] if isinstance(after, list) else [after]
    if unknown:
        raise ConfigError(f"{profile}: notebook {notebook}: budget_after lists notebooks of the profile "
                          f"(unknown: {', '.join(map(str, unknown))})")
    return seconds, list(after)


NULL_PARAMETERS = "null_parameters"  # the injected list of parameters a user set to null


def with_nulls(parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` plus the names of those given as ``None`` under :data:`NULL_PARAMETERS`, so they stay
    ``None`` through papermill's injection instead of falling back to the profile."""
    nulls = sorted(k for k, v in parameters.items() if v is None and k != NULL_PARAMETERS)
    return {**parameters, NULL_PARAMETERS: nulls} if nulls else dict(parameters)


def _merged(notebook: str, profile: str, explicit: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each given value with where it came from, in :func:`resolve`'s order (a later source wins)."""
    data = load_profile(profile)
    explicit = dict(explicit)
    nulls = set(explicit.pop(NULL_PARAMETERS, None) or ())
    merged: dict[str, tuple[Any, str]] = {}
    merged.update({k: (v, "profile defaults") for k, v in (data.get("defaults") or {}).items()})
    merged.update({k: (v, "profile") for k, v in (notebook_entry(profile, notebook).get("params") or {}).items()})
    merged.update({k: (v, "parameter") for k, v in explicit.items() if v is not None or k in nulls})
    merged["profile"] = (profile, "parameter")
    return merged


def settings_table(config: BaseModel, sources: dict[str, str]) -> list[dict[str, str]]:
    """What a page can set and what this run has: one row per config field with its value and where the
    value came from (``sources``, as :func:`resolve_with_sources` resolved it: a parameter, the profile's block
    for this notebook, the profile's defaults; else the config's own default), for a reader in JupyterLab whose
    parameters cell shows only ``None``. The run's page (one of a notebook's runs) comes from the runner as a
    parameter, so a run of the same notebook by hand may show "config default" where the runner's shows
    "parameter"."""
    from .paths import shown_path

    def shown(name: str, value: Any) -> str:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if _is_path_parameter(name) and value:  # a published page never shows the machine's folders
            value = ([shown_path(v) for v in value] if isinstance(value, list) else
                     {k: shown_path(v) for k, v in value.items()} if isinstance(value, dict) else shown_path(value))
        if name == "profile":
            value = shown_profile(value)
        return value if isinstance(value, str) else repr(value)

    rows = []
    shared = [name for name in SectionConfig.model_fields if name not in ("profile", "model")]
    for name in ["profile", *(n for n in type(config).model_fields if n not in shared and n != "profile"), *shared]:
        rows.append({"setting": name, "value": shown(name, getattr(config, name)),
                     "from": sources.get(name, "config default")})
    return rows


def resolve(config_class: type[BaseModel], notebook: str, profile: str, explicit: dict[str, Any]) -> BaseModel:
    """Profile defaults < notebook params < explicit values (papermill -p or the runner's run dict). An
    explicit ``None`` means "not given" (the parameters cell's placeholder), unless the name is listed under
    :data:`NULL_PARAMETERS`: then the parameter is ``None``."""
    return resolve_with_sources(config_class, notebook, profile, explicit)[0]


def resolve_with_sources(config_class: type[BaseModel], notebook: str, profile: str,
                         explicit: dict[str, Any]) -> tuple[BaseModel, dict[str, str]]:
    """The config :func:`resolve` builds, and where each value given to it came from ("parameter",
    "profile", "profile defaults"; a field not named there has the config's own default)."""
    merged = _merged(notebook, profile, explicit)
    fields = set(config_class.model_fields)
    unknown = sorted(set(merged) - fields)
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(fields))})")
    try:
        config = config_class(**{name: value for name, (value, _) in merged.items()})
    except ValidationError as error:
        raise config_error(error, f"{notebook}: parameter ") from None
    return config, {name: source for name, (_, source) in merged.items()}


_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def from_notebook(config_class: type[BaseModel], notebook: str, namespace: dict[str, Any]) -> BaseModel:
    """Validate the parameters a notebook holds right after papermill's injection. Any other public name
    in the namespace at that point is a parameter nobody declared: an error."""
    return from_notebook_with_sources(config_class, notebook, namespace)[0]


def from_notebook_with_sources(config_class: type[BaseModel], notebook: str,
                               namespace: dict[str, Any]) -> tuple[BaseModel, dict[str, str]]:
    """:func:`from_notebook`'s config, and where each of its given values came from
    (:func:`resolve_with_sources`), for :func:`settings_table`."""
    import types
    import warnings

    # Validating a config may load a tokenizer (e.g. to check that a trigger fits the context) before the
    # run diverts standard error into its log (selfaware.context); without ipywidgets, tqdm's notebook bar
    # then warns, with a path of this machine, into the page. The text bar it falls back to is what a
    # headless run wants anyway.
    warnings.filterwarnings("ignore", message="IProgress not found")
    public = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in _NOTEBOOK_NAMES
              and not isinstance(v, (types.ModuleType, types.FunctionType, type))}
    profile = public.pop("profile", None) or "default"
    return resolve_with_sources(config_class, notebook, profile, public)


def describe(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).strip()
