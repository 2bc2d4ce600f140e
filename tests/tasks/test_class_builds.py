"""One build per device class, on 8 devices behind the tests' real OpenSSH sshd on 127.0.0.1: four
ONNX Runtime and four OpenVINO targets (two classes: one machine, two runtimes), built side by side
as the Prefect flow runs ``build@<target>`` for different devices. Each class builds once, its other
targets copy the build sha256-verified, and every target is still benchmarked on its own. A copy
that fails its sha256 check is refused and rebuilt; another class never shares."""

from __future__ import annotations

import re
import shutil
import threading

import pytest

from tasks import benchmark, build, probe, quantize
from tasks.io import read_json, sha256_file
from tasks.layout import LAYOUT
from tasks.records import BuildRecord
from tests.conftest import ROOT, write_params
from tests.tasks.test_devices import ssh_target

ORT = [f"ort{i}" for i in range(4)]
OV = [f"ov{i}" for i in range(4)]


@pytest.fixture
def fleet(params, exported, sshd, tmp_path):
    """A DVC project's files (``dvc.yaml``: what keys the builds' inputs) with 8 loopback targets, fp32."""
    shutil.copy(ROOT / "dvc.yaml", "dvc.yaml")
    params["build"]["precisions"] = ["fp32"]
    params["bench"].update(offline_batch_sizes=[], max_cv=10.0)  # batch 1, measured once: behaviour, not speed
    for t in ORT + OV:
        params["target"][t] = ssh_target(
            sshd, tmp_path / "devices" / t, runtime="openvino" if t in OV else "onnxruntime"
        )
    params["build"]["targets"] = ORT + OV
    write_params(params)
    quantize.main(["--precision", "fp32"])
    _at_once(probe, ORT + OV)
    return params


def _at_once(stage, targets: list[str]) -> None:
    """``<stage>@<target>`` for every target at once, one thread each (as the flow's device slots do)."""
    errors: list[BaseException] = []

    def one(t: str) -> None:
        try:
            stage.main(["--target", t])
        except BaseException as e:  # noqa: BLE001 - reported below, with the target
            errors.append(e)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def _record(t: str) -> BuildRecord:
    return BuildRecord.read(LAYOUT.build_dir(t, "fp32") / "build.json")


def test_eight_devices_of_two_classes_build_twice_benchmark_eight_times_and_refuse_a_damaged_copy(fleet, sshd, capsys):
    _at_once(build, ORT + OV)
    err = capsys.readouterr().err
    built = re.findall(r"build@(\w+)-fp32: built ", err)
    shared = re.findall(r"build@(\w+)-fp32: shared from build@(\w+)-fp32 \(class ([\w.-]+)\), sha256 verified", err)
    assert len(built) == 2 and len(shared) == 6, err
    recs = {t: _record(t) for t in ORT + OV}
    for group in (ORT, OV):
        (builder,) = [t for t in group if t in built]
        assert {r.sha256 for t, r in recs.items() if t in group} == {recs[builder].sha256}
        for t in group:
            art = LAYOUT.build_dir(t, "fp32") / recs[t].artifact
            assert sha256_file(art) == recs[t].sha256
            # each record is the target's own: its address, its fingerprint; a copy names its builder
            assert recs[t].target == t and recs[t].host == f"127.0.0.1:{sshd.port}"
            assert recs[t].device_fingerprint_sha256 == read_json(LAYOUT.fingerprint(t))["fingerprint_sha256"]
            assert recs[t].extra.get("shared_from") == (None if t == builder else builder)
    assert {c for _, _, c in shared} == {recs["ort0"].extra["device_class"], recs["ov0"].extra["device_class"]}
    assert recs["ort0"].extra["device_class"] != recs["ov0"].extra["device_class"]
    assert recs["ov0"].artifact == "model.xml" and recs["ort0"].artifact != "model.xml"
    # every device is still measured on its own
    _at_once(benchmark, ORT + OV)
    for t in ORT + OV:
        bench = read_json(LAYOUT.benchmark_metrics(t, "fp32"))
        assert bench["runtime"] == recs[t].runtime and bench["latency"]["b1"]["iterations"] >= 5
    _damaged_shared_build_is_refused_and_rebuilt_and_another_class_never_shares(fleet, capsys)


def _damaged_shared_build_is_refused_and_rebuilt_and_another_class_never_shares(fleet, capsys):
    rec = _record("ort0")
    for t in ("ort2", "ort3", "ov0", "ov1"):  # built again below
        shutil.rmtree(LAYOUT.build_dir(t, "fp32"))
    store = next(LAYOUT.class_builds.glob(f"{rec.extra['device_class']}/fp32-*/"))
    (store / rec.artifact).write_bytes((store / rec.artifact).read_bytes() + b"\0")  # damaged in the store
    capsys.readouterr()
    build.main(["--target", "ort2"])
    err = capsys.readouterr().err
    assert re.search(rf"shared build \S+ refused: {re.escape(rec.artifact)} has sha256 .* building it here", err), err
    assert "build@ort2-fp32: built " in err and "shared from" not in err
    again = _record("ort2")
    assert "shared_from" not in again.extra and sha256_file(store / rec.artifact) == again.sha256  # published anew
    # the same machine and runtime named as another class builds its own; sharing off, every target builds
    fleet["target"]["ort3"]["device_class"] = "lab-b"
    fleet["target"]["ov0"]["device_class"] = "lab-b"  # same name, other runtime: its own build too
    fleet["build"]["share_by_class"] = False
    write_params(fleet)
    build.main(["--target", "ov1"])
    fleet["build"]["share_by_class"] = True
    write_params(fleet)
    for t in ("ort3", "ov0"):
        build.main(["--target", t])
    err = capsys.readouterr().err
    assert re.findall(r"build@(\w+)-fp32: built ", err) == ["ov1", "ort3", "ov0"], err
    assert _record("ort3").extra["device_class"] == _record("ov0").extra["device_class"] == "lab-b"
    assert "device_class" not in _record("ov1").extra  # no sharing: the record says nothing of a class
