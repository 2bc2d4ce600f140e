"""The project modules a module imports, followed transitively: what a stage's ``dvc.yaml`` deps
must cover so that changing any of them re-runs the stage."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "examples")
# Plumbing whose changes do not change what a stage computes, so no stage lists it and an edit of
# it re-runs nothing: the command line and error exit, parsing params.yaml (the values are DVC
# params), atomic writes and hashing, the output paths (dvc.yaml names them itself), registries,
# message text and log capture. Not walked through either.
PLUMBING = (
    "tasks/__init__.py",
    "tasks/stage.py",
    "tasks/config",
    "tasks/io.py",
    "tasks/layout.py",
    "tasks/registry.py",
    "tasks/text.py",
    "tasks/capture.py",
)


def module_file(name: str) -> Path | None:
    """``tasks.data.split`` -> ``tasks/data/split.py`` (or a package's ``__init__.py``)."""
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from tasks import stage`
    return {n for n in names if n.split(".")[0] in PACKAGES}


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def plumbing(p: Path) -> bool:
    r = rel(p)
    return any(r == x or r.startswith(x + "/") for x in PLUMBING) or _docstring_only(p)


def _docstring_only(p: Path) -> bool:
    """A package ``__init__.py`` that holds nothing but its docstring computes nothing."""
    body = ast.parse(p.read_text()).body
    return p.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


# packages that import their modules by registered name (importlib), which no import statement shows
BY_NAME = {"tasks/runtimes/__init__.py": "tasks/runtimes"}


def closure(start: Path) -> set[str]:
    """Every project file ``start`` imports, directly or through others (``start`` included),
    except :data:`PLUMBING`, as paths relative to the project root."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        p = todo.pop()
        if p in seen or plumbing(p):
            continue
        seen.add(p)
        if rel(p) in BY_NAME:
            todo += sorted((ROOT / BY_NAME[rel(p)]).glob("*.py"))
        for name in _imported(p):
            parts = name.split(".")
            # a package's __init__ runs before any of its modules
            for i in range(1, len(parts) + 1):
                f = module_file(".".join(parts[:i]))
                if f is not None:
                    todo.append(f)
    return {rel(p) for p in seen}


def covered(path: str, deps: list[str]) -> bool:
    """Whether ``path`` is one of ``deps`` or inside a folder among them."""
    return any(path == d.rstrip("/") or path.startswith(d.rstrip("/") + "/") for d in deps)
