"""The package's layers: each imports only those below it (DESIGN.md), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nasforge"

#: user-facing and public-surface modules: nothing below them may import them
ABOVE_RUN = ("nasforge.api", "nasforge.final", "nasforge.cli", "nasforge.report", "nasforge.bench", "nasforge.export", "nasforge.oneshot")
#: what each lower layer must not import
FORBIDDEN = {
    "run": ABOVE_RUN,
    "factory.py": (*ABOVE_RUN, "nasforge.run"),
    "evaluators": (*ABOVE_RUN, "nasforge.run", "nasforge.factory"),
    "strategies": (*ABOVE_RUN, "nasforge.run", "nasforge.factory", "nasforge.evaluators"),
    "codec.py": (*ABOVE_RUN, "nasforge.run", "nasforge.factory", "nasforge.evaluators", "nasforge.strategies"),
    "spaces": (*ABOVE_RUN, "nasforge.run", "nasforge.factory", "nasforge.evaluators", "nasforge.strategies"),
    "proxies": (*ABOVE_RUN, "nasforge.run", "nasforge.factory", "nasforge.evaluators", "nasforge.strategies"),
}


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, wherever in the file."""
    package = ".".join(("nasforge", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    if path.name == "__init__.py":
        package = ".".join(("nasforge", *path.relative_to(SRC).parts[:-1]))
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _files(layer: str) -> list[Path]:
    target = SRC / layer
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_is_below_them(layer: str) -> None:
    bad = []
    for path in _files(layer):
        for name in sorted(_imports(path)):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_import_parser_sees_lazy_imports(tmp_path: Path) -> None:
    # a check that cannot fail is no check: the parser must see an import inside a function
    probe = SRC / "run" / "process.py"
    assert "nasforge.factory" in _imports(probe) or "nasforge.factory.create_evaluator" in _imports(probe)


def test_importing_nasforge_leaves_scipy_and_sklearn_unloaded() -> None:
    """Every command and worker process imports nasforge; SciPy and scikit-learn add about a second to that
    start, and most processes (training, one-shot search, tabular workers) never use them: they are imported
    inside the functions that do."""
    import subprocess
    import sys

    code = "import sys, nasforge; print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
