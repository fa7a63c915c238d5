"""The import arrows of ../shared/STYLE.md: models/ stands alone; app and worker never meet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"core", "models", "app", "worker", "migrations"}

# package -> project packages it must not import
FORBIDDEN = {
    "models": {"core", "app", "worker", "migrations"},
    "core": {"app", "worker"},
    "app": {"worker"},
    "worker": {"app"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_its_import_arrows(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_models_never_reads_the_environment():
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "models").rglob("*.py"))
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    ]
    assert not offenders, offenders


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_inference_never_imports_training():
    """Serving a model needs no training code: shared helpers live in models/ itself."""
    offenders = [
        f"{p.relative_to(ROOT)} imports {sorted(m for m in imported_modules(p) if m.startswith('models.training'))}"
        for p in sorted((ROOT / "models" / "inference").rglob("*.py"))
        if any(m.startswith("models.training") for m in imported_modules(p))
    ]
    assert not offenders, offenders
