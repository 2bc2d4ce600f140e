"""``dvc.yaml`` against the code: its outputs are exactly what :mod:`tasks.layout` names, each stage's
deps cover the project modules its ``tasks/<stage>.py`` imports (so a changed runtime re-runs
exactly the stages that use it), and no stage module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tasks.layout import Layout
from tests.imports import ROOT, closure, covered

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = list(DVC["stages"])


def _modules(stage: str) -> list[str]:
    """The ``tasks/<module>.py`` a stage runs: one per command (``measure`` runs benchmark, then evaluate)."""
    cmd = DVC["stages"][stage]["cmd"]
    cmds = [cmd] if isinstance(cmd, str) else cmd
    assert all(c.startswith("python -m tasks.") for c in cmds), f"{stage}: {cmds}"
    return [c.split()[2].removeprefix("tasks.") for c in cmds]


MODULES = sorted({m for s in STAGES for m in _modules(s)})


def _paths(entries: list) -> list[str]:
    """``dvc.yaml`` list entries (``path`` or ``{path: {options}}``) as paths."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def _declared(paths: list[Path]) -> set[str]:
    return {p.as_posix() for p in paths}


def test_every_stage_runs_stage_modules_and_the_layout_knows_it():
    assert set(STAGES) == set(Layout().declared()) - {"plots"}
    for s in STAGES:
        for m in _modules(s):
            assert (ROOT / "tasks" / f"{m}.py").is_file(), (s, m)
        assert s in _modules(s) or s == "measure", s  # measure = benchmark + evaluate


@pytest.mark.parametrize("stage", STAGES)
def test_outputs_are_exactly_what_the_layout_names(stage):
    want = Layout().declared()[stage]
    spec = DVC["stages"][stage]
    assert set(_paths(spec.get("outs"))) == _declared(want["outs"])
    assert set(_paths(spec.get("metrics"))) == _declared(want["metrics"])


def test_plots_are_what_the_layout_names():
    assert set(_paths(DVC["plots"])) == _declared(Layout().declared()["plots"]["outs"])


@pytest.mark.parametrize("stage", STAGES)
def test_data_deps_are_outputs_of_other_stages(stage):
    """A dep under artifacts/ or metrics/ is (inside) an output another stage declares, or the folder
    of such outputs: a typo or a path the layout no longer writes would otherwise be a dep that no
    stage writes."""
    outputs = [
        p.as_posix()
        for s, kinds in Layout().declared().items()
        if s != stage
        for paths in kinds.values()
        for p in paths
    ]
    for dep in _paths(DVC["stages"][stage].get("deps")):
        if dep.split("/")[0] in ("artifacts", "metrics"):
            assert covered(dep, outputs) or any(covered(o, [dep]) for o in outputs), (
                f"{stage}: dep {dep} is no stage's output"
            )


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_every_project_module_the_stage_imports(stage):
    deps = _paths(DVC["stages"][stage].get("deps"))
    for module in _modules(stage):
        missing = sorted(m for m in closure(ROOT / "tasks" / f"{module}.py") if not covered(m, deps))
        assert not missing, f"{stage} ({module}) imports {missing} but dvc.yaml's deps do not list them"


@pytest.mark.parametrize("module", MODULES)
def test_no_stage_module_imports_another(module):
    others = {f"tasks.{m}" for m in MODULES if m != module}
    tree = ast.parse((ROOT / "tasks" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    assert not imported & others, f"tasks/{module}.py imports {sorted(imported & others)}"


def test_the_walker_sees_a_runtime_module_through_the_registry():
    """The check above is only as good as the import walk: a runtime loaded by name (importlib)
    still counts, so removing tasks/runtimes from evaluate's deps would fail it."""
    deps = [d for d in _paths(DVC["stages"]["measure"]["deps"]) if d != "tasks/runtimes"]
    missing = [m for m in closure(ROOT / "tasks" / "evaluate.py") if not covered(m, deps)]
    assert "tasks/runtimes/openvino_rt.py" in missing


@pytest.mark.parametrize("stage", STAGES)
def test_every_param_a_stage_lists_is_in_the_committed_params(stage):
    """DVC fails a stage after running it ("Parameters '...' are missing from 'params.yaml'") when a
    listed key is absent, and keys the schema defaults are absent from params.yaml unless conf/
    spells them out: list the section (``model``) rather than a key only the schema knows."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    targets = params["build"]["targets"]
    for entry in DVC["stages"][stage].get("params") or []:
        keys = [entry.replace("${item.target}", t) for t in targets] if "${item.target}" in entry else [entry]
        for key in keys:
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{stage}: param {key} is not in params.yaml"
                node = node[part]
