"""Device classes on real probe records: this machine's (the agent's own probe) and a FAKE Jetson's
(the same record as JetPack's probe would fill it, TensorRT's version from the FAKE trtexec)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from tasks.agent.agent import cmd_probe
from tasks.config import ConfigError
from tasks.config.schema import Target
from tasks.device.device_class import built_params, class_key
from tests.fakes import install_trtexec


@pytest.fixture(scope="module")
def here() -> dict:
    return cmd_probe({"trtexec": None})


@pytest.fixture(scope="module")
def jetson(tmp_path_factory) -> dict:
    """A FAKE Jetson AGX Orin: this machine's record with what JetPack 6.1's probe reports."""
    fp = cmd_probe({"trtexec": str(install_trtexec(tmp_path_factory.mktemp("trt"), "10.3.0"))})
    assert fp["tensorrt"] == "10.3.0"  # from the FAKE trtexec's banner
    cpu = {**fp["cpu"], "model": "ARMv8 Processor rev 1 (v8l)", "vendor": "ARM", "family": 8, "model_id": "0xd42"}
    fp.update(
        arch="aarch64",
        cpu={**cpu, "flags": ["asimd", "asimddp", "asimdhp", "fphp"]},
        gpu=[{"name": "Orin (nvgpu)", "compute_capability": "8.7"}],
        l4t="36.4",
        jetpack="6.1+b123",
        cuda="12.6.68",
        power_mode="MAXN",
    )
    return fp


def _with(fp: dict, path: str, value) -> dict:
    out = copy.deepcopy(fp)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return out


@pytest.mark.parametrize(
    "path, value",
    [
        ("os.release", "6.99.0-other"),
        ("ram_gib", 1234.5),
        ("python", "3.8.10"),
        ("numpy", "1.24.4"),
        ("agent_version", 999),
        ("fingerprint_sha256", "0" * 64),
        ("cpu.cores", 64),
        ("cpu.physical_cores", 32),
        ("cpu.mhz_nominal", 1),
    ],
)
def test_what_only_tells_two_units_apart_keeps_the_class(here, jetson, path, value):
    for fp in (here, jetson):
        assert class_key(_with(fp, path, value), "onnxruntime") == class_key(fp, "onnxruntime")


@pytest.mark.parametrize(
    "path, value",
    [
        ("arch", "riscv64"),
        ("cpu.model_id", 9999),
        ("cpu.flags", ["asimd"]),
        ("gpu", [{"name": "Orin (nvgpu)", "compute_capability": "7.2"}]),
        ("l4t", "35.4"),
        ("jetpack", "5.1.2"),
        ("cuda", "11.4.315"),
        ("tensorrt", "8.6.2"),
        ("onnxruntime", "9.9.9"),
        ("openvino", "1999.0"),
        ("power_mode", "15W"),
    ],
)
def test_what_changes_the_build_changes_the_class(jetson, path, value):
    assert class_key(_with(jetson, path, value), "tensorrt") != class_key(jetson, "tensorrt")


def test_the_class_names_the_runtime_and_the_hardware(here, jetson):
    mine = class_key(here, "onnxruntime")
    assert mine.startswith(f"onnxruntime-{here['arch'].replace('_', '-')}-") and len(mine.rsplit("-", 1)[1]) == 12
    assert class_key(here, "openvino") != mine  # one machine, two runtimes: two classes
    assert class_key(jetson, "tensorrt").startswith("tensorrt-orin-nvgpu-sm87-")


def test_an_explicit_class_is_its_name_and_must_name_a_folder(here, jetson):
    assert (
        class_key(here, "onnxruntime", "lab-x86.a_1") == class_key(jetson, "tensorrt", "lab-x86.a_1") == "lab-x86.a_1"
    )
    for bad in ("../up", "a/b", "", "-x", "x" * 65):
        with pytest.raises(ConfigError, match=r"target\.jet\.device_class"):
            class_key(here, "onnxruntime", bad, "jet")


def test_only_target_keys_that_change_the_artifact_are_built_params():
    ssh = dataclasses.asdict(Target(transport="ssh", host="10.0.0.7", port=2222, user="nv", workdir="/x", threads=4))
    kept = built_params(ssh)
    assert {"runtime", "threads", "tensorrt"} <= set(kept)
    assert not {"transport", "host", "port", "user", "workdir", "key_file", "device_class"} & set(kept)
    assert "trtexec" not in kept["tensorrt"] and "timing_cache" not in kept["tensorrt"]
    assert kept["tensorrt"]["int8"] == "qdq"
    other = dataclasses.asdict(Target(transport="ssh", host="10.0.0.8", python="/opt/py", workdir="/y", threads=4))
    assert built_params(other) == kept


def test_a_shared_build_is_keyed_by_what_builds_it_never_by_the_target(workdir):
    """entry_digest in a DVC project's files: two targets that differ in how they are reached agree;
    threads, the runtime, the device choices and the precision's model each change it."""
    import shutil

    from tasks.device.device_class import entry_digest
    from tasks.reuse import inputs_of
    from tests.conftest import ROOT, fast_params, write_params

    shutil.copy(ROOT / "dvc.yaml", "dvc.yaml")
    p = fast_params()
    a = dataclasses.asdict(Target(transport="ssh", host="10.0.0.7", user="nv", workdir="/a"))
    p["target"].update(
        a=a,
        b={**a, "host": "10.0.0.8", "port": 2200, "workdir": "/b", "device_class": "lab", "peak_gflops": {"fp32": 9}},
        c={**a, "threads": 3},
        d={**a, "runtime": "openvino"},
    )
    write_params(p)
    model = workdir / "artifacts" / "quantize" / "fp32" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"one model")
    choices = {"intra_op_threads": 2, "reasons": {"intra_op_threads": "2 cores"}}

    def digest(t: str, ch: dict = choices) -> str:
        return entry_digest(inputs_of("build", t), t, p["target"][t], "fp32", ch)

    assert digest("a") == digest("b") == digest("a", {"intra_op_threads": 2, "reasons": {}})
    assert len({digest("a"), digest("c"), digest("d"), digest("a", {"intra_op_threads": 3})}) == 4
    before = digest("a")
    model.write_bytes(b"another model")
    assert digest("a") != before
