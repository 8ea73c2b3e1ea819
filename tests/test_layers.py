"""The library's layering, checked on the source: the import contracts of pyproject.toml (import-linter),
no module reaching into another module's private names, and notebooks that import only their own
sections from ``selfaware.sections``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from selfaware import experiment
from selfaware.paths import REPO_ROOT

LIB = REPO_ROOT / "lib" / "selfaware"


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
                            cwd=REPO_ROOT / "lib", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module of a ``from X import ...`` (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(path: Path, module: str, is_package: bool) -> list[str]:
    """Where the file at ``path`` imports or reads a private name of another selfaware module."""
    tree = ast.parse(path.read_text(), str(path))
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(module, node, is_package)
            if not source.startswith("selfaware"):
                continue
            for alias in node.names:
                if source == module:
                    continue
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno} imports {source}.{alias.name}")
                aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("selfaware") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _private(node.attr)):
            found.append(f"{path.name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_reaches_into_another_modules_private_names():
    found = []
    for path in sorted(LIB.rglob("*.py")):
        found += private_reaches(path, _module_name(path), path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_the_private_name_check_can_fail(tmp_path):
    sample = tmp_path / "two_players.py"
    sample.write_text("from . import make_me_say as mms\nfrom .make_me_say import _helper\nmms._codeword(1)\n")
    found = private_reaches(sample, "selfaware.sections.two_players", False)
    assert found == ["two_players.py:2 imports selfaware.sections.make_me_say._helper",
                     "two_players.py:3 reads selfaware.sections.make_me_say._codeword"]


def test_notebooks_import_no_section_but_their_own():
    experiment.sections()  # imports every section module
    owners = {name: {module.NOTEBOOK} for name, module in sys.modules.items()
              if name.startswith("selfaware.sections.") and hasattr(module, "NOTEBOOK")}
    found = []
    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "selfaware.sections":
                modules = [f"selfaware.sections.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("selfaware.sections."):
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names if a.name.startswith("selfaware.sections.")]
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {m}" for m in modules if path.stem not in owners.get(m, ())]
    assert not found, "\n".join(found)
