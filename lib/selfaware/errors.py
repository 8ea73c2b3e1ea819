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
