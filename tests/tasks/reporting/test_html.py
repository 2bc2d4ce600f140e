"""The report's HTML page and its ``dvc plots`` data, from a real small pipeline run once for the
module (every stage's main() in-process, like `dvc repro`): fp32, fp16, int8-minmax and
int8-mixed on the local target, with int8-minmax benchmarked again under a latency budget no build
can meet, so that one row is rejected by the stage itself."""

from __future__ import annotations

import base64
import csv
import html
import os
import re
import shutil
import subprocess
import sys

import pytest

from tasks import benchmark, evaluate, export, parity, prepare, quantize, report
from tasks.config import Config, from_dict
from tasks.io import read_json
from tasks.layout import LAYOUT, Layout
from tasks.reporting import html as report_html
from tasks.reporting import plots as report_plots
from tasks.reporting.format import fmt
from tasks.reporting.selection import winners
from tests.browser import chromium_page
from tests.conftest import ROOT, build_main, fast_params, write_params

PRECISIONS = ["fp32", "fp16", "int8-minmax", "int8-mixed"]
SLOW = "local-int8-minmax"  # re-benchmarked with bench.max_p99_ms = 1e-6 ms: rejected
DATA_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project folder after `report`; the current directory while the module's tests run."""
    import torch

    from examples.mnist import MnistCNN

    root = tmp_path_factory.mktemp("report-html")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("EDGEFORGE_NO_TABLE", "1")
        p = fast_params()
        p["build"]["precisions"] = PRECISIONS
        write_params(p)
        torch.manual_seed(0)
        torch.save(MnistCNN().state_dict(), root / "model.pt")
        prepare.run(from_dict(Config, p), LAYOUT.prepare_dir, log=lambda m: None)
        export.main([])
        parity.main([])
        for prec in PRECISIONS:
            argv = ["--target", "local", "--precision", prec]
            quantize.main(["--precision", prec])
            build_main(argv)
            benchmark.main(argv)
            evaluate.main(argv)
        p["bench"]["max_p99_ms"] = 1e-6
        write_params(p, "budget.yaml")
        benchmark.main(["--params", "budget.yaml", "--target", "local", "--precision", SLOW.split("-", 1)[1]])
        report.main([])
        yield root


@pytest.fixture(scope="module")
def summary(project):
    return read_json(project / LAYOUT.report_dir / "summary.json")


@pytest.fixture(scope="module")
def page(project):
    return (project / LAYOUT.report_dir / "report.html").read_text()


def test_html_has_every_row_its_verdict_the_reasons_and_the_winner(summary, page):
    rows = summary["rows"]
    assert [r["precision"] for r in rows] == PRECISIONS
    by_key = {r["key"]: r for r in rows}
    assert by_key[SLOW]["accepted"] is False and "bench.max_p99_ms" in by_key[SLOW]["reason"]
    win = winners(rows)["local"]
    assert win["accepted"] and win["key"] != SLOW

    assert "<h1>EdgeForge report: mnist_cnn (model.pt)</h1>" in page
    ref = summary["reference"]
    assert html.escape(f"PyTorch FP32 reference {ref['label']}: {ref['value']:.2f}") in page
    table = re.findall(r'<tr class="row ([^"]*)" data-key="([^"]*)">(.*?)</tr>', page)
    assert [k for _, k, _ in table] == [r["key"] for r in rows]
    for cls, key, cells in table:
        r = by_key[key]
        tds = re.findall(r"<td[^>]*>(.*?)</td>", cells)
        # the precision cell may carry a note (emulated where this CPU has no native FP16 compute)
        assert [tds[0], tds[1].split("<span")[0], tds[2]] == [r["target"], r["precision"], r["runtime"]]
        assert ("⚠ emulated" in tds[1]) == bool(r.get("emulated"))
        assert tds[3] == fmt(r["value"]) and tds[6] == fmt(r["latency_p50_ms"])
        assert tds[7] == fmt(r["latency_p99_ms"]) and tds[4] == fmt(r["drop"])
        assert tds[8] == fmt(r["end_to_end_ms"]) and r["end_to_end_ms"] > 0  # batch 1, image to decoded result
        assert r["verdict"] in cls.split() and (("✔ accepted" if r["accepted"] else "✘ rejected") in tds[-1])
        assert ("winner" in cls.split()) == (key == win["key"]) and ("★ winner" in tds[-1]) == (key == win["key"])
    e2e = re.search(r"<ul class=end-to-end>(.*?)</ul>", page).group(1)
    assert all(f"<li>{r['key']}: end to end (b1) ms: preprocess" in e2e for r in rows)
    reasons = re.findall(r'<li data-key="([^"]*)"><b>[^<]*</b>: (.*?)</li>', page)
    assert reasons == [(r["key"], html.escape(r["reason"])) for r in rows if not r["accepted"]]
    assert (
        f"Winner on <b>local</b>: <b>{win['key']}</b> (" in page
        and html.escape(summary["winners"]["local"]["why"]) in page
    )

    # the sensitivity table of int8-mixed and the parity table of every build
    sens = read_json(LAYOUT.quantize_dir("int8-mixed") / "sensitivity.json")
    assert sens["layers"] and all(f'<td class="txt">{x["node"]}</td>' in page for x in sens["layers"])
    for r in rows:
        legs = read_json(LAYOUT.evaluate_metrics(r["target"], r["precision"]))["parity"]["legs"]
        cells = re.search(rf'<tr class="(?:accepted|rejected)" data-key="{r["key"]}">(.*?)</tr>', page).group(1)
        assert re.findall(r"<td[^>]*>(.*?)</td>", cells)[2:5] == [
            fmt(legs[leg]["logits"]["max_abs"]) for leg in ("torch_onnx", "onnx_artifact", "torch_artifact")
        ]


def test_html_is_self_contained_with_every_plot_embedded(summary, page):
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    pngs = [base64.b64decode(b) for b in DATA_PNG.findall(page)]
    # Pareto + latency for the one target, the sensitivity chart, one parity figure per build
    assert len(pngs) == 2 + 1 + len(summary["rows"])
    assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    parity_png = (LAYOUT.report_dir / "parity" / f"{SLOW}.png").read_bytes()
    assert parity_png in pngs and (LAYOUT.quantize_dir("int8-mixed") / "sensitivity.png").read_bytes() in pngs


def test_html_renders_in_chromium(project, summary, tmp_path):
    url = (project / LAYOUT.report_dir / "report.html").as_uri()
    with chromium_page() as page:
        remote = []
        page.on("request", lambda req: remote.append(req.url) if not req.url.startswith(("file:", "data:")) else None)
        page.goto(url)
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, "
            "i.naturalHeight, i.getBoundingClientRect().width])"
        )
        assert len(images) == 3 + len(summary["rows"])
        assert all(done and w > 0 and h > 0 and shown > 0 for _, done, w, h, shown in images), images
        alts = [a for a, *_ in images]
        assert "accuracy vs latency: local" in alts and "latency distribution: local" in alts
        rows = page.locator("tr.row")
        assert rows.count() == len(summary["rows"])
        for i, r in enumerate(summary["rows"]):
            assert rows.nth(i).is_visible()
            shown = r["precision"] + ("⚠ emulated" if r.get("emulated") else "")  # fp16 where the CPU has no FP16
            assert rows.nth(i).locator("td").nth(1).inner_text() == shown
        assert page.locator("tr.row.winner").count() == 1
        assert "winner" in page.locator("tr.row.winner td.verdict").inner_text()
        assert "rejected" in page.locator(f'tr.row[data-key="{SLOW}"] td.verdict').inner_text()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert remote == []
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_int8_fallbacks_show_a_warning_box_with_the_layers_folded_beyond_six(project, summary, tmp_path):
    """A build whose layers left INT8 (what an implicit-INT8 TensorRT build records; the local target
    records none, so the row is given them here): its precision is marked, a ⚠ box names the first six
    layers and the fix, and the rest stay folded in <details> until opened, in Chromium."""
    layers = [f"/features/conv{i}/Conv" for i in range(9)] + ["(Unnamed Layer* 7) [Constant]"]
    rows = [
        {**r, "int8_fallbacks": len(layers), "int8_fallback_layers": layers} if r["precision"] == "int8-minmax" else r
        for r in summary["rows"]
    ]
    assert all(r.get("int8_fallbacks") is None for r in summary["rows"])  # ONNX Runtime records none
    key = "local-int8-minmax"
    page_html = report_html.render({**summary, "rows": rows}, report_html.collect(summary, LAYOUT, "m"))
    (tmp_path / "fallbacks.html").write_text(page_html)
    assert page_html.count('class="warn fallbacks"') == 1 and html.escape(layers[-1]) in page_html
    with chromium_page() as page:
        page.goto((tmp_path / "fallbacks.html").as_uri())
        cell = page.locator(f'tr.row[data-key="{key}"] td').nth(1).inner_text()
        assert cell.startswith("int8-minmax") and "⚠ partial: 10 layers not INT8" in cell
        assert page.locator('tr.row[data-key="local-fp32"] td').nth(1).inner_text() == "fp32"
        box = page.locator(f'div.fallbacks[data-key="{key}"]')
        assert box.is_visible() and "tensorrt.int8: qdq" in box.inner_text()
        items = box.locator("li")
        assert items.count() == len(layers)
        assert [items.nth(i).is_visible() for i in range(len(layers))] == [True] * 6 + [False] * 4
        assert box.locator("summary").inner_text() == "4 more"
        box.locator("summary").click()
        assert items.nth(9).is_visible() and items.nth(9).inner_text() == layers[-1]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_plot_data_files_hold_every_build(project, summary):
    rows = summary["rows"]
    win = winners(rows)["local"]["key"]
    front = {r["key"] for r in report_plots.pareto_front(rows)}
    assert win in front and SLOW not in front
    for a in (r for r in rows if r["key"] in front):  # no accepted build beats a front point on both axes
        assert not any(
            b["accepted"] and b["latency_p50_ms"] < a["latency_p50_ms"] and b["value"] >= a["value"] for b in rows
        )

    pareto = _read_csv(project / LAYOUT.report_dir / "plots" / "pareto.csv")
    assert [tuple(p.values()) for p in pareto] == [
        (
            r["target"],
            r["precision"],
            r["key"],
            str(r["latency_p50_ms"]),
            str(r["value"]),
            str(r["accepted"]),
            str(r["key"] in front),
            str(r["key"] == win),
        )
        for r in rows
    ]

    lat = _read_csv(project / LAYOUT.report_dir / "plots" / "latency" / "local.csv")
    assert list(lat[0]) == ["percentile", *PRECISIONS]
    assert [p["percentile"] for p in lat] == ["0", "50", "90", "95", "99", "100"]
    for prec in PRECISIONS:
        b1 = read_json(LAYOUT.benchmark_metrics("local", prec))["latency"]["b1"]
        assert [float(p[prec]) for p in lat] == [
            b1[k] for k in ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")
        ]
    assert sorted(os.listdir(project / LAYOUT.report_dir / "plots")) == ["latency", "pareto.csv"]


def test_dvc_plots_show_draws_the_declared_plots(project, summary, tmp_path):
    """The top-level ``plots:`` of the repository's dvc.yaml, on this run's data, through DVC itself."""
    repo = tmp_path / "repo"
    shutil.copytree(project / LAYOUT.report_dir / "plots", repo / LAYOUT.report_dir / "plots")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(project / "params.yaml", repo / "params.yaml")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=repo, check=True, timeout=120)
    r = subprocess.run([*dvc, "plots", "show", "--json"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert not out.get("errors"), out["errors"]
    plots = {k: v[0]["content"] for k, v in out["data"].items()}
    scatter = plots["artifacts/report/plots/pareto.csv"]
    assert scatter["mark"]["type"] == "point"
    assert scatter["encoding"]["x"]["field"] == "latency_p50_ms" and scatter["encoding"]["y"]["field"] == "value"
    assert sorted(d["key"] for d in scatter["data"]["values"]) == sorted(r["key"] for r in summary["rows"])
    curve = plots["artifacts/report/plots/latency/local.csv"]
    assert curve["encoding"]["x"]["field"] == "percentile"
    assert {d["field"] for d in curve["data"]["values"]} == set(PRECISIONS)  # one line per precision


def test_a_failed_write_keeps_the_previous_page_and_leaves_no_temp_file(project, summary, tmp_path, monkeypatch):
    copy = Layout(tmp_path / "copy")
    shutil.copytree(project / LAYOUT.artifacts, copy.artifacts)
    shutil.copytree(project / LAYOUT.metrics, copy.metrics)
    shutil.rmtree(copy.report_dir)
    out = copy.report_dir
    first = report_html.write(summary, copy, model="first")
    before = first.read_text()
    real = os.replace

    def crash_on_page(src, dst):
        if os.path.basename(dst) == "report.html":
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_page)
    with pytest.raises(OSError, match="disk full"):
        report_html.write(summary, copy, model="second")
    assert first.read_text() == before and "EdgeForge report: first" in before
    assert sorted(os.listdir(out)) == ["plots", "report.html"]  # no .report.html.*.tmp left


def test_a_failing_report_stage_leaves_no_report(project, tmp_path, monkeypatch):
    """The page is written inside the stage: a failure there removes artifacts/report (docs/architecture.md, rule 5)
    before anything reaches MLflow."""
    from mlflow import MlflowClient

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    runs = len(client.search_runs([client.get_experiment_by_name("edgeforge").experiment_id]))

    def broken(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        report.main([])
    assert not (copy / LAYOUT.report_dir).exists()
    assert len(client.search_runs([client.get_experiment_by_name("edgeforge").experiment_id])) == runs
