"""MLflow tracking on a sqlite store under tmp_path: one real small pipeline (every stage's
entry point, once for the module), logged three times, then read back through MlflowClient:
the run hierarchy, tags (toolkit versions, checkpoint sha256, DVC experiment from the env),
params, the HTML report, the registered winner and its alias moving to each new version, and no
secret anywhere."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import io
import os
import platform
from pathlib import Path

import pytest

from tasks import report, stage
from tasks.config import Config, from_dict
from tasks.config.schema import Target
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.records import built_artifact
from tasks.reporting.selection import winners
from tasks.tracking import runs as tracking
from tasks.tracking.registry import alias_for, aliases, model_name
from tasks.tracking.uri import redact_uri
from tests.conftest import build_main, fast_params, write_params

PRECISIONS = ("fp32", "fp16", "int8-minmax")
SECRET = "hunter2-do-not-log"
URI = "sqlite:///mlflow.db"  # relative: the project folder is the current directory
ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "EDGEFORGE_EXP_NAME", "DVC_EXP_NAME")


def make_project(folder: Path) -> Config:
    """Every stage before ``report`` run through its entry point in ``folder`` (the current
    directory), as ``dvc repro`` would; returns the config."""
    import torch

    from examples.mnist import MnistCNN
    from tasks import benchmark, evaluate, export, parity, prepare, quantize

    cfg = from_dict(Config, fast_params())
    write_params(dataclasses.asdict(cfg))
    torch.manual_seed(0)
    torch.save(MnistCNN().state_dict(), folder / "model.pt")
    prepare.run(cfg, LAYOUT.prepare_dir, log=lambda m: None)
    export.main([])
    parity.main([])
    for p in PRECISIONS:
        argv = ["--target", "local", "--precision", p]
        quantize.main(["--precision", p])
        build_main(argv)
        benchmark.main(argv)
        evaluate.main(argv)
    return cfg


@dataclasses.dataclass
class SecretTarget(Target):
    """A target with a credential in it: what a careless config could hold."""

    password: str = SECRET


def with_secret(cfg: Config) -> Config:
    t = cfg.target["local"]
    fields = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    return dataclasses.replace(cfg, target={**cfg.target, "local": SecretTarget(**fields)})


def _clear_report_extras() -> None:
    from tasks.io import remove

    for p in (LAYOUT.report_html, LAYOUT.plots_dir):
        if p.exists():
            remove(p)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The pipeline logged three times to one sqlite store:
    1. by ``report.main`` with ``DVC_EXP_NAME`` set;
    2. by ``log_pipeline`` with a password under ``target.local``, neither experiment variable
       set, and no HTML report;
    3. by ``log_pipeline`` with ``EDGEFORGE_EXP_NAME`` (and a ``DVC_EXP_NAME`` it overrides) and
       the HTML report with its plots.
    Yields the folder, config, summary, the three results and what was logged to stderr, and
    the alias's version after each run."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k in ENV:
            mp.delenv(k, raising=False)
        cfg = make_project(folder)
        client = MlflowClient(tracking_uri=URI)
        name = model_name(cfg)

        mp.setenv("DVC_EXP_NAME", "dvc-exp-1")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            report.main([])
        summary = read_json(LAYOUT.report_dir / "summary.json")
        results = [summary["mlflow"]]
        alias_versions = [str(client.get_model_version_by_alias(name, "local").version)]
        del summary["mlflow"]

        mp.delenv("DVC_EXP_NAME")
        _clear_report_extras()
        with contextlib.redirect_stderr(err):
            results.append(tracking.log_pipeline(with_secret(cfg), summary))
        alias_versions.append(str(client.get_model_version_by_alias(name, "local").version))

        mp.setenv("EDGEFORGE_EXP_NAME", "ef-exp-3")
        mp.setenv("DVC_EXP_NAME", "not-this-one")
        (LAYOUT.plots_dir).mkdir(parents=True, exist_ok=True)
        (LAYOUT.report_html).write_text("<html><body>EdgeForge report</body></html>")
        (LAYOUT.plots_dir / "latency.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        with contextlib.redirect_stderr(err):
            results.append(tracking.log_pipeline(cfg, summary))
        alias_versions.append(str(client.get_model_version_by_alias(name, "local").version))
        yield {
            "folder": folder,
            "cfg": cfg,
            "summary": summary,
            "results": results,
            "client": client,
            "stderr": err.getvalue(),
            "alias_versions": alias_versions,
            "name": name,
        }


def runs_of(logged, i: int) -> tuple:
    """(parent, children by ``<target>-<precision>`` key) of the ``i``-th logged pipeline."""
    client = logged["client"]
    parent = client.get_run(logged["results"][i]["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return parent, {r.data.tags["edgeforge.key"]: r for r in children}


def test_parent_and_one_child_per_target_and_precision(logged):
    client = logged["client"]
    exp = client.get_experiment_by_name(logged["cfg"].report.experiment)
    assert len(client.search_runs([exp.experiment_id])) == 3 * (1 + len(PRECISIONS))
    sha = sha256_file(logged["folder"] / "model.pt")[:8]
    for i, (result, exp_name) in enumerate(zip(logged["results"], ("dvc-exp-1", "workspace", "ef-exp-3"))):
        parent, children = runs_of(logged, i)
        # named for a list of runs: model, DVC experiment (none: the workspace), checkpoint
        assert parent.info.run_name == f"mnist_cnn · {exp_name} · {sha}" and parent.info.status == "FINISHED"
        assert parent.data.tags["edgeforge.kind"] == "pipeline" and "mlflow.parentRunId" not in parent.data.tags
        assert result["tracking_uri"] == URI and result["experiment"] == "edgeforge"
        assert set(children) == {f"local-{p}" for p in PRECISIONS}
        assert {k: c.info.run_name for k, c in children.items()} == {f"local-{p}": f"local · {p}" for p in PRECISIONS}
        assert all(c.info.status == "FINISHED" for c in children.values())


def test_every_run_tagged_with_versions_checkpoint_commit_and_experiment(logged):
    folder = logged["folder"]
    expected = {"version.python": platform.python_version()}
    for tag, dist in (
        ("torch", "torch"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("openvino", "openvino"),
        ("dvc", "dvc"),
        ("mlflow", "mlflow"),
        ("edgeforge", "edgeforge"),
    ):
        expected[f"version.{tag}"] = importlib.metadata.version(dist)
    ckpt = sha256_file(folder / "model.pt")
    for i, exp_name in enumerate(("dvc-exp-1", "", "ef-exp-3")):
        parent, children = runs_of(logged, i)
        for run in (parent, *children.values()):
            tags = run.data.tags
            assert {k: tags.get(k) for k in expected} == expected
            assert tags["checkpoint_sha256"] == ckpt
            assert tags["git_commit"]
            assert tags["dvc_experiment"] == exp_name
        for _key, run in children.items():
            t, p = run.data.params["target"], run.data.params["precision"]
            built = read_json(folder / LAYOUT.build_metrics(t, p))
            artifact = built_artifact(folder / LAYOUT.build_dir(t, p))
            assert run.data.tags["artifact_sha256"] == built["sha256"] == sha256_file(artifact)
            assert run.data.tags["runtime_version"] == str(built["runtime_version"])


def test_child_params_and_metric_names_line_up(logged):
    _, children = runs_of(logged, 0)
    for key, run in children.items():
        precision = key.removeprefix("local-")
        assert run.data.params == {
            "target": "local",
            "precision": precision,
            "runtime": "onnxruntime",
            "calibrator": "minmax" if precision.startswith("int8") else "none",
        }
    names = {k: set(r.data.metrics) for k, r in children.items()}
    assert names["local-fp32"] == names["local-fp16"]
    assert names["local-fp32"] <= names["local-int8-minmax"]  # plus the count of layers kept FP32
    assert {"accuracy_top1", "accuracy_drop", "latency_p50_ms", "throughput", "size_mb", "accepted"} <= names[
        "local-fp32"
    ]


def test_html_report_and_plots_logged_to_the_parent_when_present(logged):
    client = logged["client"]
    without, _ = runs_of(logged, 1)
    with_report, _ = runs_of(logged, 2)
    assert "report" not in {a.path for a in client.list_artifacts(without.info.run_id)}
    assert {a.path for a in client.list_artifacts(with_report.info.run_id, "report")} == {
        "report/report.html",
        "report/plots",
    }
    plots = client.list_artifacts(with_report.info.run_id, "report/plots")
    assert [a.path for a in plots] == ["report/plots/latency.svg"]


def test_winner_registered_with_target_alias_that_moves_to_each_new_version(logged):
    client, name, cfg = logged["client"], logged["name"], logged["cfg"]
    assert name == f"edgeforge-{cfg.model.arch}"
    win = winners(logged["summary"]["rows"])["local"]
    for i, result in enumerate(logged["results"]):
        reg = result["registered"]["local"]
        parent, children = runs_of(logged, i)
        child = children[win["key"]]
        assert reg == {
            "name": name,
            "version": str(i + 1),
            "alias": "local",
            "run_id": child.info.run_id,
            "precision": win["precision"],
            "source": f"runs:/{child.info.run_id}/build",
        }
        mv = client.get_model_version(name, reg["version"])
        assert mv.run_id == child.info.run_id and mv.source == reg["source"]
        assert mv.tags["target"] == "local" and mv.tags["precision"] == win["precision"]
        assert mv.tags["runtime"] == "onnxruntime" and mv.tags["artifact_sha256"] == win["artifact_sha256"]
        assert mv.tags["checkpoint_sha256"] == sha256_file(logged["folder"] / "model.pt")
        assert mv.tags["metric"] == "top1" and float(mv.tags["top1"]) == pytest.approx(win["value"])
        assert parent.data.tags["registered.local"] == f"models:/{name}/{i + 1}"
    assert logged["alias_versions"] == ["1", "2", "3"]
    assert {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} == {"local": "3"}
    assert [client.get_model_version(name, v).aliases for v in ("1", "2", "3")] == [[], [], ["local"]]
    assert "registered local's winner" in logged["stderr"]


def test_registered_alias_downloads_the_build(logged, tmp_path):
    import mlflow

    out = Path(
        mlflow.artifacts.download_artifacts(f"models:/{logged['name']}@local", dst_path=str(tmp_path), tracking_uri=URI)
    )
    assert {"model.onnx", "build.json"} <= {p.name for p in out.iterdir()}
    built = read_json(out / "build.json")
    win = winners(logged["summary"]["rows"])["local"]
    assert sha256_file(out / built["artifact"]) == win["artifact_sha256"]


def test_report_stores_the_registered_versions_in_summary_json(logged):
    summary = read_json(logged["folder"] / LAYOUT.report_dir / "summary.json")
    assert summary["mlflow"]["registered"]["local"]["alias"] == "local"
    assert summary["mlflow"]["registered"]["local"]["version"] == "1"


def test_no_secret_in_params_tags_versions_or_logs(logged):
    client, name = logged["client"], logged["name"]
    parent, children = runs_of(logged, 1)
    assert "target.local.runtime" in parent.data.params
    assert not any("password" in k for k in parent.data.params)
    for run in (parent, *children.values()):
        assert SECRET not in repr(run.data.params) + repr(run.data.tags)
    for mv in client.search_model_versions(f"name = '{name}'"):
        assert SECRET not in repr(mv.tags) + mv.description
    assert SECRET not in logged["stderr"] and SECRET not in repr(logged["results"])


def test_experiment_is_marked_model_training_and_the_link_opens_its_runs(logged):
    """MLflow 3's UI opened an unmarked experiment on its GenAI overview (traces, tokens)."""
    exp = logged["client"].get_experiment_by_name("edgeforge")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for result in logged["results"]:
        assert (
            result["ui_url"] == f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs"
            "?workflowType=machine_learning"
        )


def test_an_existing_unmarked_experiment_is_marked(logged, monkeypatch):
    """An experiment an older EdgeForge created (no kind) is marked when the next run logs to it."""
    from mlflow import MlflowClient

    monkeypatch.chdir(logged["folder"])
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(k, raising=False)
    client = MlflowClient(tracking_uri="sqlite:///old.db")
    exp_id = client.create_experiment("edgeforge-old")
    cfg = dataclasses.replace(
        logged["cfg"],
        report=dataclasses.replace(
            logged["cfg"].report, register=False, tracking_uri="sqlite:///old.db", experiment="edgeforge-old"
        ),
    )
    tracking.log_pipeline(cfg, logged["summary"])
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize(
    "fmt, arch, checkpoint, label",
    [
        ("state_dict", "mnist_cnn", "artifacts/prepare/model.pt", "mnist_cnn"),
        ("state_dict", "mypkg.nets:MyNet", "ckpt/best.pt", "MyNet"),
        ("onnx", None, "exported/resnet18-v2.onnx", "resnet18-v2"),
        ("torchscript", "ignored", "ts/yolo.pt", "yolo"),
    ],
)
def test_model_label_for_run_names(fmt, arch, checkpoint, label):
    from tasks.tracking.ui import model_label

    cfg = from_dict(Config, fast_params())
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, format=fmt, arch=arch, checkpoint=checkpoint))
    assert model_label(cfg) == label


@pytest.mark.parametrize(
    "uri, base",
    [
        ("sqlite:///mlflow.db", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("https://me:s3cret@mlflow.example.invalid/ml/", "https://mlflow.example.invalid/ml"),
    ],
)
def test_runs_url_opens_model_training_runs_without_credentials(uri, base):
    from tasks.tracking.ui import runs_url

    assert runs_url(uri, "7") == f"{base}/#/experiments/7/runs?workflowType=machine_learning"


def test_register_off_registers_nothing_and_env_is_left_as_found(logged, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: were it left set, this second call in
    the same process would log to the first store instead of the one its config names."""
    from mlflow import MlflowClient

    monkeypatch.chdir(logged["folder"])
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(k, raising=False)
    cfg = dataclasses.replace(
        logged["cfg"],
        report=dataclasses.replace(logged["cfg"].report, register=False, tracking_uri="sqlite:///other.db"),
    )
    result = tracking.log_pipeline(cfg, logged["summary"])
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ
    assert result["registered"] == {} and result["tracking_uri"] == "sqlite:///other.db"
    other = MlflowClient(tracking_uri="sqlite:///other.db")
    assert "registered.local" not in other.get_run(result["parent_run_id"]).data.tags
    assert other.search_registered_models() == []
    assert len(logged["client"].search_model_versions(f"name = '{logged['name']}'")) == 3


def test_the_figures_go_to_the_parent_run_and_each_build_s_parity_png_to_its_child(logged, monkeypatch):
    """report.html and plots/ are logged to the parent run, each build's parity PNG to its own child
    run (the report stage draws them all, in a second process, before anything is logged)."""
    from mlflow import MlflowClient

    monkeypatch.chdir(logged["folder"])
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(k, raising=False)
    _clear_report_extras()
    keys = [r["key"] for r in logged["summary"]["rows"] if not r.get("skipped")]
    pngs = {k: LAYOUT.parity_png(k).read_bytes() for k in keys}
    for k in keys:
        LAYOUT.parity_png(k).unlink()
    LAYOUT.plots_dir.mkdir(parents=True)
    LAYOUT.report_html.write_text("<html><body>drawn</body></html>")
    (LAYOUT.plots_dir / "latency.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    for k, png in pngs.items():
        LAYOUT.parity_png(k).write_bytes(png)

    cfg = dataclasses.replace(
        logged["cfg"],
        report=dataclasses.replace(logged["cfg"].report, register=False, tracking_uri="sqlite:///late.db"),
    )
    result = tracking.log_pipeline(cfg, logged["summary"])
    client = MlflowClient(tracking_uri="sqlite:///late.db")
    parent = client.get_run(result["parent_run_id"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {
        "report/report.html",
        "report/plots",
    }
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["edgeforge.key"] for r in children) == sorted(keys)
    for run in children:
        key = run.data.tags["edgeforge.key"]
        assert {a.path for a in client.list_artifacts(run.info.run_id, "parity")} == {f"parity/{key}.png"}


@pytest.mark.parametrize(
    "fmt, arch, checkpoint, name",
    [
        ("state_dict", "mnist_cnn", "model.pt", "edgeforge-mnist_cnn"),  # the bundled example: unchanged
        ("state_dict", "mypkg:MyNet", "model.pt", "edgeforge-mypkg.MyNet"),  # the README's form had a ':'
        ("state_dict", "my pkg.nets:My/Net", "model.pt", "edgeforge-my-pkg.nets.My-Net"),
        ("torchscript", "mypkg:MyNet", "ckpts/run 7/best.ts", "edgeforge-best"),  # no arch: the file's name
        ("onnx", None, "det.onnx", "edgeforge-det"),
    ],
)
def test_default_registered_model_name_is_one_mlflow_accepts(fmt, arch, checkpoint, name):
    from tasks.config.load import model_name_problem

    cfg = from_dict(Config, fast_params())
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, format=fmt, arch=arch, checkpoint=checkpoint))
    assert model_name(cfg) == name and model_name_problem(name) is None


def test_a_model_class_given_as_module_colon_class_registers_its_winner(logged, monkeypatch):
    """Regression: `arch: mypkg:MyNet` made the name `edgeforge-mypkg:MyNet`, which MLflow refused at
    the very end of a run whose every stage had succeeded."""
    monkeypatch.chdir(logged["folder"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = dataclasses.replace(logged["cfg"], model=dataclasses.replace(logged["cfg"].model, arch="mypkg.nets:MyNet"))
    result = tracking.log_pipeline(cfg, logged["summary"])
    assert result["registered"]["local"]["name"] == "edgeforge-mypkg.nets.MyNet"
    versions = logged["client"].search_model_versions("name = 'edgeforge-mypkg.nets.MyNet'")
    assert [v.tags["target"] for v in versions] == ["local"]


def test_registry_failure_names_model_and_tracking_uri(logged, monkeypatch):
    monkeypatch.chdir(logged["folder"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = dataclasses.replace(
        logged["cfg"],
        report=dataclasses.replace(logged["cfg"].report, registered_model="bad/name", experiment="edgeforge-fail"),
    )
    with pytest.raises(stage.StageError) as e:
        tracking.log_pipeline(cfg, logged["summary"])
    assert "'bad/name'" in str(e.value) and URI in str(e.value)
    failed = logged["client"].search_runs(
        [logged["client"].get_experiment_by_name("edgeforge-fail").experiment_id], "tags.`edgeforge.kind` = 'pipeline'"
    )
    assert [r.info.status for r in failed] == ["FAILED"]


@pytest.mark.parametrize(
    "target, alias",
    [
        ("local", "local"),
        ("jetson.orin nano", "jetson-orin-nano"),
        ("rpi_5-b", "rpi_5-b"),
        ("latest", "target-latest"),
        ("LATEST", "target-LATEST"),
        ("v2", "target-v2"),
        ("V10", "target-V10"),
        ("v2a", "v2a"),
        ("é", "target"),
        ("x" * 300, "x" * 255),
    ],
)
def test_alias_follows_mlflow_rules(target, alias):
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    assert alias_for(target) == alias
    _validate_model_alias_name(alias)
    _validate_model_alias_name_reserved(alias)


def test_colliding_aliases_are_an_error():
    with pytest.raises(stage.StageError, match="'a.b' and 'a-b'"):
        aliases(["a.b", "a-b"])


def test_toolkit_versions_skip_missing_packages(monkeypatch):
    monkeypatch.setattr(tracking, "PACKAGES", {"torch": ("torch",), "nope": ("edgeforge-no-such-package",)})
    v = tracking.toolkit_versions()
    assert v == {"version.python": platform.python_version(), "version.torch": importlib.metadata.version("torch")}


def test_experiment_name_prefers_edgeforge_then_dvc(monkeypatch):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    assert tracking.experiment_name() == ""
    monkeypatch.setenv("DVC_EXP_NAME", "dvc")
    assert tracking.experiment_name() == "dvc"
    monkeypatch.setenv("EDGEFORGE_EXP_NAME", "ef")
    assert tracking.experiment_name() == "ef"


def test_flatten_drops_a_password_under_a_target():
    flat = tracking.flatten(dataclasses.asdict(with_secret(from_dict(Config, fast_params()))))
    assert "target.local.runtime" in flat and "target.local.password" not in flat
    assert SECRET not in repr(flat)


def test_redact_uri_masks_passwords_only():
    assert redact_uri("http://me:s3cret@host:5000/x") == "http://me:***@host:5000/x"
    assert redact_uri("postgresql://u:p@db/mlflow") == "postgresql://u:***@db/mlflow"
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_int8_fallbacks_are_a_child_metric_and_tag(logged, monkeypatch):
    """A build whose layers left INT8 (implicit-INT8 TensorRT) logs their count and names; an ORT build,
    which records none, logs neither."""
    from mlflow import MlflowClient

    monkeypatch.chdir(logged["folder"])
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(k, raising=False)
    uri = "sqlite:///fallbacks.db"
    cfg = dataclasses.replace(
        logged["cfg"],
        report=dataclasses.replace(logged["cfg"].report, register=False, tracking_uri=uri, experiment="fb"),
    )
    layers = [f"/conv{i}/Conv" for i in range(3)]
    summary = {
        **logged["summary"],
        "rows": [
            {**r, "int8_fallbacks": 3, "int8_fallback_layers": layers} if r["precision"] == "int8-minmax" else r
            for r in logged["summary"]["rows"]
        ],
    }
    result = tracking.log_pipeline(cfg, summary)
    client = MlflowClient(tracking_uri=uri)
    children = {
        c.data.tags["edgeforge.key"]: c
        for c in client.search_runs(
            [client.get_experiment_by_name("fb").experiment_id],
            f"tags.mlflow.parentRunId = '{result['parent_run_id']}'",
        )
    }
    int8 = children["local-int8-minmax"]
    assert int8.data.metrics["int8_fallback_layers"] == 3
    assert int8.data.tags["int8_fallbacks"] == ",".join(layers)
    assert "int8_fallback_layers" not in children["local-fp32"].data.metrics
    assert "int8_fallbacks" not in children["local-fp32"].data.tags
