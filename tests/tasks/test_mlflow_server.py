"""MLflow over HTTP: a real ``mlflow server`` on 127.0.0.1 (each test twice: a sqlite backend, and
a real PostgreSQL server's database, the documented team deployment; proxied artifacts under tmp_path; started once for the module, its whole process group stopped at the end), the
real small pipeline logged to it through ``MLFLOW_TRACKING_URI``, read back over HTTP, and the
UI opened in headless Chromium: the link the summary prints opens the experiment on its runs
table (child runs under the parent, by their names), the compare view of the child runs, and the
registered model with its alias."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tasks import report
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.records import built_artifact
from tasks.reporting.selection import winners
from tasks.tracking.registry import model_name
from tests.browser import chromium_page
from tests.mlflow_server import backend_store, serve
from tests.tasks.test_tracking import ENV, PRECISIONS, make_project


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    """``{"uri": "http://127.0.0.1:<port>", "root": <folder with artifacts/>, "backend": the store URI}``."""
    with backend_store(request.param, tmp_path_factory.mktemp(f"mlflow-server-{request.param}")) as store:
        with serve(store, tmp_path_factory.mktemp("mlflow-server")) as srv:
            yield srv


@pytest.fixture(scope="module")
def logged(server, tmp_path_factory):
    """The small pipeline, its report stage logging over HTTP to ``server``."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("http-project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k in ENV:
            mp.delenv(k, raising=False)
        cfg = make_project(folder)
        mp.setenv("MLFLOW_TRACKING_URI", server["uri"])
        mp.setenv("EDGEFORGE_EXP_NAME", "http-exp")
        report.main([])
        summary = read_json(LAYOUT.report_dir / "summary.json")
        yield {"folder": folder, "cfg": cfg, "summary": summary, "client": MlflowClient(tracking_uri=server["uri"])}


def test_runs_and_artifacts_over_http(server, logged):
    client, summary = logged["client"], logged["summary"]
    assert summary["mlflow"]["tracking_uri"] == server["uri"]
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    ckpt = sha256_file(logged["folder"] / "model.pt")[:8]
    assert parent.info.run_name == f"mnist_cnn · http-exp · {ckpt}" and parent.info.status == "FINISHED"
    assert parent.data.tags["dvc_experiment"] == "http-exp" and parent.data.tags["version.mlflow"]
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {r.info.run_name for r in children} == {f"local · {p}" for p in PRECISIONS}
    for run in children:
        key = run.data.tags["edgeforge.key"]
        assert run.data.params["precision"] == key.removeprefix("local-")
        built = built_artifact(logged["folder"] / LAYOUT.build_dir("local", run.data.params["precision"]))
        assert run.data.tags["artifact_sha256"] == sha256_file(built)
        logged_build = {a.path for a in client.list_artifacts(run.info.run_id, "build")}
        assert {"build/model.onnx", "build/build.json"} <= logged_build
    # the artifacts went through the server's proxy into its --artifacts-destination
    assert list((server["root"] / "artifacts").rglob("build.json"))
    if server["backend"].startswith("postgresql"):  # and the runs are rows of the PostgreSQL database
        import psycopg

        with psycopg.connect(server["backend"].replace("postgresql+psycopg://", "postgresql://")) as db:
            ids = {r[0] for r in db.execute("select run_uuid from runs").fetchall()}
        assert {parent.info.run_id, *(r.info.run_id for r in children)} <= ids


def test_winner_registered_over_http(server, logged, tmp_path):
    import mlflow

    client, summary = logged["client"], logged["summary"]
    name = model_name(logged["cfg"])
    win = winners(summary["rows"])["local"]
    reg = summary["mlflow"]["registered"]["local"]
    assert reg["name"] == name and reg["version"] == "1" and reg["alias"] == "local"
    mv = client.get_model_version_by_alias(name, "local")
    assert str(mv.version) == "1" and mv.run_id == reg["run_id"]
    assert client.get_run(mv.run_id).data.tags["edgeforge.key"] == win["key"]
    assert mv.tags["precision"] == win["precision"] and mv.tags["artifact_sha256"] == win["artifact_sha256"]
    out = Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}@local", dst_path=str(tmp_path), tracking_uri=server["uri"])
    )
    assert sha256_file(out / read_json(out / "build.json")["artifact"]) == win["artifact_sha256"]


def test_ui_opens_the_runs_table_with_child_runs_compare_view_and_alias(server, logged, tmp_path):
    client, uri = logged["client"], server["uri"]
    exp = client.get_experiment_by_name(logged["cfg"].report.experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs([exp.experiment_id], "tags.`edgeforge.kind` = 'build'")
    parent = client.get_run(logged["summary"]["mlflow"]["parent_run_id"])
    name = model_name(logged["cfg"])
    with chromium_page() as page:
        # the link the summary prints, in a browser new to MLflow (whose sidebar switch starts on GenAI)
        link = logged["summary"]["mlflow"]["ui_url"]
        assert link == f"{uri}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
        page.goto(link, wait_until="commit")
        # child runs sit folded under their parent: the Run Name cell's only button unfolds them
        cell = page.locator("[role=gridcell][col-id='attributes.`Run Name`']").filter(has_text=parent.info.run_name)
        cell.get_by_role("button").click(timeout=60_000)
        for p in PRECISIONS:
            page.get_by_text(f"local · {p}", exact=True).first.wait_for(timeout=30_000)
        # the runs table, not the GenAI overview (Overview, Traces, Sessions, Judges in its sidebar)
        assert "/runs" in page.url
        assert page.get_by_text("Model training", exact=True).first.is_visible()
        for genai in ("Overview", "Sessions", "Judges"):
            assert page.get_by_text(genai, exact=True).count() == 0, genai
        page.screenshot(path=str(tmp_path / "experiment.png"))

        ids = json.dumps([r.info.run_id for r in children])
        page.goto(
            f"{uri}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments="
            f"{urllib.parse.quote(json.dumps([exp.experiment_id]))}",
            wait_until="commit",
        )
        page.get_by_text(f"Comparing {len(PRECISIONS)} Runs", exact=False).wait_for(timeout=60_000)
        for text in ("latency_p50_ms", "precision", *(f"local · {p}" for p in PRECISIONS)):
            page.get_by_text(text, exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "compare.png"))

        page.goto(f"{uri}/#/models/{name}", wait_until="commit")
        page.get_by_text(re.compile(r"@\s*local")).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "model.png"))
    assert all((tmp_path / f).stat().st_size > 0 for f in ("experiment.png", "compare.png", "model.png"))
