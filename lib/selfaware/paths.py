"""Where things live on disk. Every location can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def cache_dir() -> Path:
    """Root of all caches (model calls, converted weights, adapters). Git-ignored."""
    return _env_path("SELFAWARE_CACHE_DIR", REPO_ROOT / ".cache" / "selfaware")


def models_dir() -> Path:
    """Converted model weights (the embedded GGUF as safetensors): shared even when the call cache moves."""
    return _env_path("SELFAWARE_MODELS_DIR", REPO_ROOT / ".cache" / "selfaware" / "models")


def outputs_dir() -> Path:
    return _env_path("SELFAWARE_OUTPUTS_DIR", REPO_ROOT / "outputs")


def data_dir() -> Path:
    return REPO_ROOT / "data"


def params_dir() -> Path:
    return REPO_ROOT / "params"


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def shown_path(path: str | Path) -> str:
    """A path as a published page shows it: relative to the repository or the outputs folder when inside
    one of them, else only its file name (a site never shows the machine's folders)."""
    path = Path(path).expanduser()
    absolute = path if path.is_absolute() else (REPO_ROOT / path)
    for root, prefix in ((outputs_dir(), "outputs/"), (REPO_ROOT, "")):
        try:
            return prefix + absolute.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return f".../{path.name}"
