"""Shared fixtures: a scratch project folder, a fast config, a small untrained model and
prepared splits of the real MNIST digits. Everything is written under ``tmp_path``."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# pytest-xdist runs one worker per core: PyTorch's OpenMP pool would start one thread per core in
# every worker (and in every stage process a worker starts), and its spinning threads then fight
# over the cores; a single intra-op thread per worker keeps them from oversubscribing the machine
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tasks.config import Config, from_dict  # noqa: E402
from tasks.layout import LAYOUT


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty project folder as the current directory (stages write artifacts/, metrics/ here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fast_params() -> dict:
    """The default config with small data and short benchmarks (behaviour, not speed, is tested)."""
    cfg = dataclasses.asdict(Config())
    cfg["prepare"]["train"] = None
    cfg["build"]["precisions"] = ["fp32", "fp16", "int8-minmax"]
    cfg["model"]["checkpoint"] = "model.pt"
    cfg["data"]["calib"]["limit"] = 32
    cfg["data"]["eval"]["limit"] = 96
    cfg["bench"].update(offline_batch_sizes=[4], warmup_s=0.0, min_duration_s=0.0, min_iterations=5)
    # every build path is exercised whatever this machine's ISA (fp16 has native compute on some CPUs
    # only); the skip of emulated precisions has its own tests (tests/tasks/test_bf16.py)
    cfg["bench"]["emulated"] = "measure"
    cfg["report"]["tracking_uri"] = "sqlite:///mlflow.db"
    return cfg


@pytest.fixture
def params(workdir) -> dict:
    """Fast config as a plain dict; call ``write_params(params)`` after changing it."""
    p = fast_params()
    write_params(p)
    return p


def write_params(p: dict, path: str | Path = "params.yaml") -> Path:
    Path(path).write_text(yaml.safe_dump(p, sort_keys=False))
    return Path(path)


@pytest.fixture
def cfg(params) -> Config:
    return from_dict(Config, params)


@pytest.fixture
def model_file(workdir) -> Path:
    """An untrained (seeded) MnistCNN state_dict at ``model.pt``."""
    import torch

    from examples.mnist import MnistCNN

    torch.manual_seed(0)
    torch.save(MnistCNN().state_dict(), workdir / "model.pt")
    return workdir / "model.pt"


@pytest.fixture
def prepared(cfg, workdir) -> Path:
    """``artifacts/prepare`` with calib (32) and eval (96) splits of the real digits."""
    from tasks.layout import LAYOUT
    from tasks.prepare import run

    OUT = LAYOUT.prepare_dir

    run(cfg, OUT, log=lambda m: None)
    return OUT


@pytest.fixture
def exported(cfg, model_file, prepared) -> Path:
    """``artifacts/export/model.onnx`` from the untrained model (dynamo exporter)."""
    from tasks.export import run
    from tasks.layout import LAYOUT

    OUT = LAYOUT.onnx

    run(cfg, OUT, log=lambda m: None)
    return OUT


@pytest.fixture
def fp32_artifact(cfg, exported, tmp_path) -> Path:
    """The local target's FP32 build of the ``exported`` model (under ``tmp_path/build-fp32``)."""
    return fp32_build(exported, tmp_path / "build-fp32")


def fp32_build(onnx_path: Path, out: Path) -> Path:
    """The local target's (ONNX Runtime) FP32 build of ``onnx_path`` in the new folder ``out``."""
    from tasks.runtimes import BuildOptions, get_runtime

    out.mkdir()
    return get_runtime("onnxruntime").build(onnx_path, "fp32", out, BuildOptions()).artifact


def build_main(argv: list[str]) -> None:
    """``build.main(argv)`` as DVC runs it: after ``probe@<target>`` (run here when its
    fingerprint is missing)."""
    from tasks import build, probe

    target = argv[argv.index("--target") + 1]
    if not LAYOUT.fingerprint(target).is_file():
        probe.main(["--target", target])
    build.main(argv)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A running OpenSSH sshd on 127.0.0.1 (random port) that accepts ``sshd.key_path`` for the
    current user; ``sshd.known_hosts`` holds its host key. Skipped when OpenSSH is not
    installed, except under CI (``CI=true``), where that is a failure."""
    from tasks.hosts import loopback

    if not loopback.SSHD.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{loopback.INSTALL_HINT} (CI=true: the SSH tests must not be skipped)")
        pytest.skip(loopback.INSTALL_HINT)
    with loopback.start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_mlflow_stores():
    """MLflow caches its stores and database engines by URI string: a test's own client on a
    relative ``sqlite:///mlflow.db`` (in its own folder) would reuse the previous test's. Forget them."""
    yield
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    # the model registry keeps engines of its own: a relative sqlite URI would keep the previous
    # test's database (its pooled connections were opened in that test's folder)
    for store in (SqlAlchemyStore, RegistryStore):
        with store._engine_map_lock:
            store._engine_map.clear()

    TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
    ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()


def run_stages(precisions: list[str], target: str = "local") -> None:
    """Every stage's entry point in DVC's order, in this folder (``params.yaml`` written): prepare,
    export, parity, probe, then quantize, build, benchmark and evaluate per precision, and the report."""
    from tasks import benchmark, build, evaluate, export, parity, prepare, probe, quantize, report

    prepare.main([])
    export.main([])
    parity.main([])
    probe.main(["--target", target])
    for precision in precisions:
        quantize.main(["--precision", precision])
        for stage in (build, benchmark, evaluate):
            stage.main(["--target", target, "--precision", precision])
    report.main([])


#: the modules that take minutes (CI's durations), longest first: `make test` runs files on 2 workers
#: (`--dist loadfile --no-loadscope-reorder`, which keeps this order), so that the long ones start first
#: and no worker idles at the end while the other runs a long module it took last
SLOW_FIRST = (
    "tests/flows/test_watch_e2e.py",
    "tests/test_examples_e2e.py",
    "tests/test_pipeline_e2e.py",
    "tests/test_examples_e2e_more.py",
    "tests/test_devices_e2e.py",
    "tests/test_workers_e2e.py",
    "tests/flows/test_worker.py",
    "tests/test_real_model.py",
    "tests/test_fidelity_e2e.py",
    "tests/flows/test_pipeline.py",
    "tests/flows/test_dvc_remote.py",
    "tests/tasks/runtimes/test_executorch_rt.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Slow modules first (:data:`SLOW_FIRST`, then any other e2e-marked one), the rest in collection order."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}

    def key(item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        if path in rank:
            return (0, rank[path])
        return (1 if item.get_closest_marker("e2e") else 2, 0)

    items.sort(key=key)  # stable: a module's tests keep their order
