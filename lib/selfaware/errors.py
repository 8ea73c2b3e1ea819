"""Errors a researcher sees. Each one names the culprit in one line."""


class SelfAwareError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(SelfAwareError):
    """A profile, parameter or model spec is wrong."""


class DatasetError(SelfAwareError):
    """A dataset file is malformed; the message names file and line."""


class ModelNotAvailable(SelfAwareError):
    """A model cannot be loaded (missing package, missing directory, missing key)."""


class CacheMiss(SelfAwareError):
    """Replay-only cache mode was asked for something it has never seen."""


class BudgetExceeded(SelfAwareError):
    """The estimated cost of a run is above its budget; nothing was spent."""


class ModelCallFailed(SelfAwareError):
    """A model API call still failed after its bounded retries (the message never carries a key)."""


class FinetuneFailed(SelfAwareError):
    """A finetuning job ended in failure or was cancelled; the message names the job."""


def config_error(error, where: str = "", allowed=()) -> ConfigError:
    """The one-line ``ConfigError`` for a failed validation of a typed config (a pydantic ``ValidationError``,
    taken as is so that this module needs no import): ``<where><field>: <problem> (got <value>)``, then
    ``(allowed: ...)`` when ``allowed`` names the valid fields. Only the first problem is named: fixing it
    is the next step, and one line is what a notebook shows."""
    first = error.errors()[0]
    field = ".".join(map(str, first.get("loc", ()))) or "value"
    message = f"{where}{field}: {first.get('msg')}"
    if "input" in first:
        message += f" (got {first['input']!r})"
    if allowed:
        message += f" (allowed: {', '.join(allowed)})"
    return ConfigError(message)
