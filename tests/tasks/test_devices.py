"""Probe and build on a device over real SSH (the tests' OpenSSH sshd on 127.0.0.1): ONNX
Runtime and OpenVINO for real, TensorRT against the FAKE trtexec (tests/fakes/trtexec, replaying
real logs), and the ways a device fails: unreachable, wrong key, unknown host key, a command
that hangs, a full disk, a failed build."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tasks import build, probe, quantize
from tasks.config.schema import Target
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.stage import TRANSIENT_EXIT
from tests.conftest import ROOT, write_params
from tests.fakes import TRT_PYTHON, install_trtexec

#: a recorded trtexec build failure: no implementation (tactic) for a layer
NO_TACTIC = "trt8.5_could_not_find_implementation_fail.log"


def ssh_target(sshd, device_dir: Path, **kw) -> dict:
    t = dataclasses.asdict(
        Target(
            transport="ssh",
            host=sshd.host,
            port=sshd.port,
            key_file=str(sshd.key_path),
            known_hosts=str(sshd.known_hosts),
            workdir=str(device_dir),
            python=sys.executable,
            connect_timeout_s=5.0,
        )
    )
    for k, v in kw.items():
        if k == "tensorrt":
            t["tensorrt"].update(v)
        else:
            t[k] = v
    return t


@pytest.fixture
def devices(params, exported, sshd, tmp_path):
    """Config with SSH targets on the loopback sshd; quantized models for fp32, fp16, int8-minmax."""
    trt10 = install_trtexec(tmp_path / "trt10", "10.3.0")
    trt11 = install_trtexec(tmp_path / "trt11", "11.0.0")
    trt_fail = install_trtexec(tmp_path / "trt_fail", "8.5.3", fail=NO_TACTIC)
    trt_int8_fail = install_trtexec(tmp_path / "trt_int8_fail", "10.3.0", fail=NO_TACTIC, fail_flag="--int8")
    dev = tmp_path / "device"
    params["target"].update(
        {
            "dev_ort": ssh_target(sshd, dev / "ort"),
            "dev_ov": ssh_target(sshd, dev / "ov", runtime="openvino"),
            "dev_trt10": ssh_target(sshd, dev / "trt10", runtime="tensorrt", tensorrt={"trtexec": str(trt10)}),
            "dev_trt11": ssh_target(sshd, dev / "trt11", runtime="tensorrt", tensorrt={"trtexec": str(trt11)}),
            "dev_trt_fail": ssh_target(sshd, dev / "trtf", runtime="tensorrt", tensorrt={"trtexec": str(trt_fail)}),
            "dev_trt_int8_fail": ssh_target(
                sshd, dev / "trt8f", runtime="tensorrt", tensorrt={"trtexec": str(trt_int8_fail)}
            ),
            "dev_no_trt": ssh_target(
                sshd, dev / "nt", runtime="tensorrt", tensorrt={"trtexec": str(tmp_path / "none")}
            ),
        }
    )
    write_params(params)
    for p in params["build"]["precisions"]:
        quantize.main(["--precision", p])
    return dev


def _build(target: str, precision: str) -> dict:
    if not LAYOUT.fingerprint(target).is_file():
        probe.main(["--target", target])
    build.main(["--target", target, "--precision", precision])
    return read_json(LAYOUT.build_metrics(target, precision))


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_probe_over_ssh_fingerprints_the_device(devices):
    probe.main(["--target", "dev_ort"])
    probe.main(["--target", "local"])
    fp, local = read_json(LAYOUT.fingerprint("dev_ort")), read_json(LAYOUT.fingerprint("local"))
    assert fp["onnxruntime"] == ort.__version__ and fp["arch"] and fp["cpu"]["cores"] >= 1
    assert fp["tensorrt"] is None and fp["ram_gib"] > 0
    # the loopback device is this machine with this interpreter: the very same fingerprint
    assert fp["fingerprint_sha256"] == local["fingerprint_sha256"] == probe.fingerprint_hash(fp)


def test_onnxruntime_and_openvino_build_on_the_device(devices, sshd):
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    for p in ("fp32", "int8-minmax"):
        meta = _build("dev_ort", p)
        art = LAYOUT.build_dir("dev_ort", p) / meta["artifact"]
        assert meta["host"] == f"127.0.0.1:{sshd.port}" and meta["runtime_version"] == ort.__version__
        assert meta["device_fingerprint_sha256"] == read_json(LAYOUT.fingerprint("dev_ort"))["fingerprint_sha256"]
        src = LAYOUT.precision_onnx(p, "onnxruntime", meta["device_choices"].get("ort_int8_layout"))
        np.testing.assert_allclose(_logits(art, x), _logits(src, x), atol=1e-4)
    meta = _build("dev_ov", "fp16")
    folder = LAYOUT.build_dir("dev_ov", "fp16")
    assert {"model.xml", "model.bin", "build.json"} <= {p.name for p in folder.iterdir()}
    assert meta["runtime"] == "openvino" and meta["int8_ops"] == 0
    # jobs are cleaned up on the device; the uploaded agent stays for the next call
    assert list((devices / "ort" / "jobs").iterdir()) == []
    assert len(list((devices / "ort").glob("agent-*.pyz"))) == 1


def test_tensorrt_builds_with_the_recipe_of_the_device_version(devices):
    fp = probe.run(*_cfg_and("dev_trt10"))
    assert fp["tensorrt"] == "10.3.0"
    meta = _build("dev_trt10", "fp16")
    folder = LAYOUT.build_dir("dev_trt10", "fp16")
    assert meta["artifact"] == "model.engine" and meta["recipe"] == "weakly-typed" and meta["flags"] == ["--fp16"]
    assert meta["tensorrt_version"] == "10.3.0" and "--profilingVerbosity=detailed" in meta["command"]
    assert (folder / "model.engine").read_bytes().startswith(b"EDGEFORGE FAKE TRT ENGINE")
    assert "&&&& PASSED" in (folder / "build.log").read_text() and (folder / "layers.json").is_file()
    # kept on the device, one per TensorRT version and GPU, reused by the next build
    (cache,) = (devices / "trt10").glob("timing.trt10.3.0.*.cache")
    assert meta["trt_timing_cache"].endswith(cache.name) and meta["trt_tf32"] is True
    size = cache.stat().st_size
    _build("dev_trt10", "int8-minmax")
    assert cache.stat().st_size > size
    meta11 = _build("dev_trt11", "int8-minmax")
    assert meta11["recipe"] == "strongly-typed" and meta11["flags"] == [] and meta11["tensorrt_version"] == "11.0.0"
    assert "--int8" not in meta11["command"]
    # strongly typed: the FP16-glue Q/DQ model (the glue numerics --int8 --fp16 gives 10.3), recorded as such
    assert (meta11["trt_onnx"], meta11["trt_int8_glue"]) == ("fp16_glue_onnx", "fp16")
    assert meta11["source_onnx_sha256"] == sha256_file(LAYOUT.fp16_glue_onnx("int8-minmax"))
    meta10 = read_json(LAYOUT.build_metrics("dev_trt10", "int8-minmax"))
    assert (meta10["trt_onnx"], meta10["trt_int8_glue"], meta10["flags"]) == (
        "precision_onnx",
        "fp16",
        ["--int8", "--fp16"],
    )
    assert meta10["source_onnx_sha256"] == sha256_file(LAYOUT.precision_onnx("int8-minmax"))


def _cfg_and(target: str):
    from tasks.config import load_config

    return load_config(), target


def test_failed_tensorrt_build_quotes_trtexec_errors_and_leaves_nothing(devices, capsys):
    with pytest.raises(SystemExit):
        _build("dev_trt_fail", "fp16")
    err = capsys.readouterr().err
    assert "edgeforge build@dev_trt_fail-fp16: error:" in err
    assert "Could not find any implementation for node" in err  # trtexec's [E] line, quoted
    assert "trtexec --onnx=model.onnx --saveEngine=model.engine --fp16" in err  # and the command
    assert (
        not LAYOUT.build_dir("dev_trt_fail", "fp16").exists()
        and not LAYOUT.build_metrics("dev_trt_fail", "fp16").exists()
    )


def test_a_failed_precision_leaves_the_other_builds_of_the_target(devices, params, capsys):
    """``build@<target>`` builds every precision in one run: one whose build fails on the device (no
    TensorRT tactic for its INT8 layers) leaves no outputs, the precisions after it still build and
    are kept, and the stage exits 1 naming the failed build; once the device builds it, the next run
    builds that precision only."""
    t = "dev_trt_int8_fail"
    params["build"]["precisions"] = ["int8-minmax", "fp32", "fp16"]  # the failure first: the others come after it
    write_params(params)
    shutil.copy(ROOT / "dvc.yaml", "dvc.yaml")  # a DVC project: kept builds are recognised by their inputs
    probe.main(["--target", t])
    with pytest.raises(SystemExit) as e:
        build.main(["--target", t])
    assert e.value.code == 1  # a build failure, not a device that did not answer (75)
    err = capsys.readouterr().err
    assert f"edgeforge build@{t}-int8-minmax: error:" in err and "Could not find any implementation for node" in err
    assert f"edgeforge build@{t}: error: 1 failed: build@{t}-int8-minmax" in err and "Traceback" not in err
    assert not LAYOUT.build_dir(t, "int8-minmax").exists() and not LAYOUT.build_metrics(t, "int8-minmax").exists()
    built = {}
    for p in ("fp32", "fp16"):
        meta = read_json(LAYOUT.build_metrics(t, p))
        assert meta["precision"] == p and "--int8" not in meta["flags"]
        assert (LAYOUT.build_dir(t, p) / "model.engine").read_bytes().startswith(b"EDGEFORGE FAKE TRT ENGINE")
        built[p] = LAYOUT.build_metrics(t, p).read_bytes()
    assert sorted(f.name for f in LAYOUT.builds(t).iterdir()) == ["fp16", "fp32"]  # no scratch folder left
    # the device's TensorRT now builds INT8: only that precision is built, the others are kept as they are
    install_trtexec(Path(params["target"][t]["tensorrt"]["trtexec"]).parent, "10.3.0")
    build.main(["--target", t])
    err = capsys.readouterr().err
    assert err.count("unchanged since it was built: kept") == 2
    assert {p: LAYOUT.build_metrics(t, p).read_bytes() for p in built} == built
    assert "--int8" in read_json(LAYOUT.build_metrics(t, "int8-minmax"))["flags"]


def test_tensorrt_target_without_tensorrt_says_so(devices, capsys):
    with pytest.raises(SystemExit):
        _build("dev_no_trt", "fp32")
    assert "the probe found no TensorRT on the device" in capsys.readouterr().err


def _fails(target: str, capsys, stage_main=None, code: int = 1) -> str:
    with pytest.raises(SystemExit) as e:
        (stage_main or probe.main)(["--target", target])
    assert e.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unreachable_device_fails_within_the_connect_timeout(params, sshd, tmp_path, capsys):
    from tasks.hosts.loopback import free_port

    params["target"]["gone"] = ssh_target(sshd, tmp_path / "d", port=free_port(), connect_timeout_s=2.0, retries=0)
    write_params(params)
    t0 = time.perf_counter()
    err = _fails("gone", capsys, code=TRANSIENT_EXIT)  # unreachable may pass: the flow retries exit 75 only
    assert time.perf_counter() - t0 < 10
    assert "gone: cannot connect" in err and not LAYOUT.fingerprint("gone").exists()


def test_wrong_key_and_unknown_host_key_are_refused(params, sshd, tmp_path, capsys):
    from tasks.hosts.loopback import keygen

    keygen(tmp_path / "other_key", "not-authorised")
    (tmp_path / "empty_known_hosts").write_text("")
    params["target"]["wrong_key"] = ssh_target(sshd, tmp_path / "d", key_file=str(tmp_path / "other_key"))
    params["target"]["stranger"] = ssh_target(sshd, tmp_path / "d", known_hosts=str(tmp_path / "empty_known_hosts"))
    write_params(params)
    assert "authentication" in _fails("wrong_key", capsys).lower()
    err = _fails("stranger", capsys)
    assert f"stranger: host key of [127.0.0.1]:{sshd.port}" in err and "allow_unknown_host: true" in err


def test_hung_device_command_is_killed_at_the_command_timeout(devices, params, sshd, tmp_path, capsys):
    marker = f"edgeforge-hang-{time.time_ns()}"
    hang = tmp_path / "hanging-python"
    hang.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(30)' {marker}\n")
    hang.chmod(0o755)
    probe.main(["--target", "dev_ort"])
    params["target"]["dev_ort"].update(python=str(hang), command_timeout_s=2.0)
    write_params(params)
    t0 = time.perf_counter()
    with pytest.raises(SystemExit):
        build.main(["--target", "dev_ort", "--precision", "fp32"])
    assert time.perf_counter() - t0 < 15
    assert "timed out after 2 s and was stopped on the device" in capsys.readouterr().err
    time.sleep(1.5)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # killed on the device
    assert not LAYOUT.build_dir("dev_ort", "fp32").exists()


def test_full_device_disk_fails_the_upload_and_leaves_nothing(devices, params, tmp_path, capsys):
    disk = tmp_path / "tiny-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is not exercised")
    try:
        params["target"]["dev_ort"]["workdir"] = str(disk / "edgeforge")
        write_params(params)
        probe.main(["--target", "dev_ort"])  # the agent (tens of kB) fits; the model does not
        with pytest.raises(SystemExit):
            build.main(["--target", "dev_ort", "--precision", "fp32"])
        err = capsys.readouterr().err
        assert "edgeforge build@dev_ort-fp32: error: dev_ort:" in err and "space" in err.lower()
        assert not LAYOUT.build_dir("dev_ort", "fp32").exists()
        assert [p.name for p in (disk / "edgeforge" / "jobs").iterdir()] == []  # no partial upload left
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_ops_the_device_tensorrt_lacks_fail_before_any_upload(devices, capsys):
    """The lint runs on this machine: a model with an op TensorRT cannot import never reaches
    the device (no job folder is created there)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 28, 28])
    node = helper.make_node("Gelu", ["input"], ["logits"], name="ort_only_gelu", domain="com.microsoft")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    for path in (
        LAYOUT.precision_onnx("fp32"),
        Path("artifacts/export/model.onnx"),
    ):  # TensorRT 10 builds FP32 from the export
        onnx.save(model, str(path))
    probe.main(["--target", "dev_trt10"])
    with pytest.raises(SystemExit):
        build.main(["--target", "dev_trt10", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert "com.microsoft:Gelu" in err and "ort_only_gelu" in err
    assert not (devices / "trt10" / "jobs").exists()
    assert not LAYOUT.build_dir("dev_trt10", "fp32").exists()


def test_benchmark_and_evaluate_run_on_the_device_and_reuse_uploaded_data(devices, params):
    from tasks import benchmark, evaluate, parity

    parity.main([])
    argv = ["--target", "dev_ort", "--precision", "fp32"]
    _build("dev_ort", "fp32")
    benchmark.main(argv)
    evaluate.main(argv)
    data = devices / "ort" / "data"
    first = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    assert len(first) == 2  # content-addressed: the eval split and the benchmark batch
    evaluate.main(argv)
    benchmark.main(argv)
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == first  # reused, not sent again
    bench = read_json(LAYOUT.benchmark_metrics("dev_ort", "fp32"))
    assert bench["cold"]["first_inference_ms"] > 0 and bench["hygiene"]["before"]["load_avg_1m"] >= 0
    assert read_json(LAYOUT.evaluate_metrics("dev_ort", "fp32"))["samples"] == 96
    # end to end on a device: the agent's copies and compute; decoding on this host; no preprocessing there
    e2e = bench["end_to_end"]
    assert e2e["input_copy_ms"] > 0 and e2e["compute_ms"] > 0 and e2e["output_copy_ms"] > 0 and e2e["decode_ms"] > 0
    assert e2e["preprocess_ms"] is None and e2e["total_ms"] is None and "this host" in e2e["what"]["decode"]
    params["bench"]["max_cv"] = 0.0  # every measurement "drifts": each batch size is measured again, on the device
    write_params(params)
    benchmark.main(argv)
    bench = read_json(LAYOUT.benchmark_metrics("dev_ort", "fp32"))
    assert bench["retried"] == ["b1", "b4"] and bench["unstable"] == ["b1", "b4"]


def test_tensorrt_target_benchmarks_and_evaluates_through_the_pipeline_stages(devices, params, tmp_path):
    """A TensorRT device (FAKE trtexec + FAKE tensorrt/pycuda whose engines run their ONNX with ONNX
    Runtime): the benchmark stage records EdgeForge's application latency and, beside it, trtexec's
    own summary (the replayed log's figures: not this machine's); evaluate runs the engine on the
    device and its three-way parity against the ONNX it was built from is exact."""
    from tasks import benchmark, evaluate, parity

    trt = install_trtexec(tmp_path / "trt10py", "10.3.0")
    py = tmp_path / "device-python"  # the device's python, with the FAKE TensorRT Python packages importable
    py.write_text(f'#!/bin/sh\nPYTHONPATH={TRT_PYTHON} EDGEFORGE_FAKE_TRT_VERSION=10.3.0 exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    params["target"]["dev_trt"] = {
        **params["target"]["dev_trt10"],
        "workdir": str(devices / "trtpy"),
        "python": str(py),
        "tensorrt": {**params["target"]["dev_trt10"]["tensorrt"], "trtexec": str(trt)},
    }
    write_params(params)
    parity.main([])
    for precision in ("fp32", "int8-minmax"):
        meta = _build("dev_trt", precision)
        # the profile covers the benchmarked (1, 4) and evaluated (eval.batch_size 64) batches
        assert "--minShapes=input:1x1x28x28 --optShapes=input:4x1x28x28 --maxShapes=input:64x1x28x28" in meta["command"]
        argv = ["--target", "dev_trt", "--precision", precision]
        benchmark.main(argv)
        evaluate.main(argv)
        bench = read_json(LAYOUT.benchmark_metrics("dev_trt", precision))
        assert bench["runtime"] == "tensorrt" and set(bench["latency"]) == {"b1", "b4"}
        assert bench["single_stream"]["p99_ms"] > 0 and bench["cold"]["load_ms"] > 0
        t = bench["trtexec"]["b1"]
        assert t["latency"]["median"] == pytest.approx(0.0368652)  # trt10.16_rtx6000ada_loadengine_fp16_ok.log
        # end to end: trtexec's GPU Compute Time; that log's H2D/D2H are 0 (no data transfers): not measured
        e2e = bench["end_to_end"]
        assert e2e["compute_ms"] == pytest.approx(t["gpu_compute_time"]["median"]) and e2e["decode_ms"] > 0
        assert e2e["input_copy_ms"] is None and "did not include data transfers" in e2e["what"]["input_copy"]
        assert t["tensorrt"] == "10.3.0" and t["defaults"]["cuda_graph"] is False
        assert any(a.startswith("--loadEngine=") for a in t["argv"])
        ev = read_json(LAYOUT.evaluate_metrics("dev_trt", precision))
        assert ev["samples"] == 96 and ev["accepted"] is True
        assert ev["parity"]["legs"]["onnx_artifact"]["logits"]["max_abs"] < 1e-5


def test_tensorrt_device_without_its_python_packages_records_trtexec_only(devices, params, capsys):
    """No TensorRT Python/pycuda on the device: trtexec's replayed summary is recorded, no latency
    distribution is made up from it, and the build is marked rejected saying what to install."""
    from tasks import benchmark

    _build("dev_trt10", "fp32")
    benchmark.main(["--target", "dev_trt10", "--precision", "fp32"])
    bench = read_json(LAYOUT.benchmark_metrics("dev_trt10", "fp32"))
    assert bench["latency"] == {} and "single_stream" not in bench and "cold" not in bench
    assert "pycuda" in bench["latency_unavailable"] and bench["accepted"] is False
    assert bench["trtexec"]["b1"]["latency"]["median"] == pytest.approx(0.0368652)
    assert "no EdgeForge latency on this device" in capsys.readouterr().err
    assert bench["reason"].startswith("no application latency measured")


def test_implicit_int8_layers_without_a_scale_reach_the_report(devices, params, tmp_path):
    """tensorrt.int8: calib builds the FP32 ONNX with quantize's calibration cache; every network tensor
    the cache has no scale for makes TensorRT warn "Missing scale and zero-point" (the FAKE trtexec does
    as the real one) and its layers run FP16/FP32. The build records them and the report row marks the
    precision partial, through the FAKE end to end (build, benchmark, evaluate on the device)."""
    from tasks import benchmark, evaluate, parity
    from tasks.reporting import format as report_format
    from tasks.reporting import summary as report_summary

    trt = install_trtexec(tmp_path / "trt10calib", "10.3.0")
    py = tmp_path / "device-python"
    py.write_text(f'#!/bin/sh\nPYTHONPATH={TRT_PYTHON} EDGEFORGE_FAKE_TRT_VERSION=10.3.0 exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    params["quant"]["trt_version"] = "10.3.0"
    params["build"]["precisions"] = [*params["build"]["precisions"], "int8-entropy"]
    params["target"]["dev_calib"] = {
        **params["target"]["dev_trt10"],
        "workdir": str(devices / "calib"),
        "python": str(py),
        "tensorrt": {**params["target"]["dev_trt10"]["tensorrt"], "trtexec": str(trt), "int8": "calib"},
    }
    write_params(params)
    quantize.main(["--precision", "int8-entropy"])
    cache = LAYOUT.quantize_dir("int8-entropy") / "calibration.cache"
    lines = cache.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2" and any(s.startswith("relu_1: ") for s in lines)
    parity.main([])
    assert _build("dev_calib", "int8-entropy")["int8_fallback_tensors"] == []  # quantize's cache covers every tensor
    # a cache that lacks two tensors (calibrated on an earlier export whose names have since moved)
    cache.write_text("\n".join(s for s in lines if not s.startswith(("relu_1: ", "view: "))) + "\n")
    meta = _build("dev_calib", "int8-entropy")
    log = (LAYOUT.build_dir("dev_calib", "int8-entropy") / meta["build_log"]).read_text()
    assert "[W] [TRT] Missing scale and zero-point for tensor relu_1, expect fall back to non-int8" in log
    assert meta["int8_fallback_tensors"] == ["relu_1", "view"]
    layers = meta["int8_fallback_layers"]  # the layers that write or read them (ONNX node names)
    assert len(layers) == 4 and all(layers), layers
    argv = ["--target", "dev_calib", "--precision", "int8-entropy"]
    benchmark.main(argv)
    evaluate.main(argv)
    row = report_summary.row(LAYOUT, "dev_calib", "int8-entropy", {})
    assert (row["int8_fallbacks"], row["int8_fallback_layers"]) == (4, layers)
    summary = {"reference": {"metric": "top1", "label": "top-1 %", "value": 99.0}, "rows": [row]}
    md = report_format.markdown(summary)
    assert "| dev_calib | int8-entropy (partial: 4 layers not INT8) | tensorrt |" in md
    assert "target.dev_calib.tensorrt.int8: qdq" in md and layers[0] in md
