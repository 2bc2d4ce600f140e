"""The Hailo DFC recipe planned on the host: each step's argv from the target's settings, the shell quoting
of what is recorded, the model script, and the calibration set's layout."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import numpy as np
import pytest

from tasks.config.load import ConfigError, check, from_dict
from tasks.config.schema import Config, Hailo, Target
from tasks.data.split import save_split
from tasks.device.support import support
from tasks.runtimes import get_runtime
from tasks.runtimes import hailo_recipe as recipe
from tasks.runtimes.base import BuildError


def test_three_steps_with_the_arch_and_the_calibration_split_never_random_data():
    parser, optimize, compiler = recipe.steps(Hailo(hw_arch="hailo8l"))
    assert parser.argv == ["hailo", "parser", "onnx", "model.onnx", "--hw-arch", "hailo8l"]
    assert parser.outputs == ["model.har"]  # the net is named after the ONNX file
    assert optimize.argv == ["hailo", "optimize", "model.har", "--hw-arch", "hailo8l", "--calib-set-path", "calib.npy"]
    assert optimize.outputs == ["model_optimized.har"]
    assert compiler.argv == ["hailo", "compiler", "model_optimized.har", "--hw-arch", "hailo8l"]
    assert compiler.outputs == ["model.hef"]  # the net's name, not the HAR file's
    assert "-y" not in parser.argv  # a parse the DFC could only do cropped must fail, not build another model
    every = [a for s in recipe.steps(Hailo(optimization_level=0, compiler_max=True)) for a in s.argv]
    assert "--use-random-calib-set" not in every


def test_levels_go_into_the_model_script_not_the_command_line():
    assert recipe.model_script(Hailo()) == ""
    h = Hailo(optimization_level=4, compression_level=0, compiler_max=True)
    assert recipe.model_script(h) == (
        "model_optimization_flavor(optimization_level=4, compression_level=0)\n"
        "performance_param(compiler_optimization_level=max)\n"
    )
    optimize = recipe.steps(h)[1].argv
    assert optimize[optimize.index("--model-script") + 1] == "model.alls"
    assert recipe.model_script(Hailo(compression_level=2)) == "model_optimization_flavor(compression_level=2)\n"


def test_recorded_commands_quote_every_value_for_a_posix_shell():
    h = Hailo(hailo="/opt/hailo suite/bin/hailo; rm -rf ~", hw_arch="hailo8")
    parser = recipe.steps(h)[0]
    line = recipe.command_line(parser)
    assert line.startswith("'/opt/hailo suite/bin/hailo; rm -rf ~' parser onnx")
    assert shlex.split(line) == parser.argv


def test_calibration_set_is_nhwc_float32_of_the_first_samples(tmp_path):
    x = np.arange(5 * 3 * 4 * 6, dtype=np.float32).reshape(5, 3, 4, 6)
    save_split(tmp_path / "calib", x, np.zeros(5, np.int64))
    info = recipe.write_calib(tmp_path / "calib", tmp_path / "up" / "calib.npy", samples=3)
    got = np.load(tmp_path / "up" / "calib.npy")
    assert info == {"calib_entries": 3, "calib_shape": [3, 4, 6, 3], "calib_layout": "NHWC"}
    assert got.dtype == np.float32 and got.shape == (3, 4, 6, 3)
    assert got[1, 2, 5, 0] == x[1, 0, 2, 5] and got[2, 3, 1, 2] == x[2, 2, 3, 1]
    assert recipe.write_calib(tmp_path / "calib", tmp_path / "all.npy", samples=500)["calib_entries"] == 5


def test_calibration_refuses_a_split_that_is_not_images(tmp_path):
    save_split(tmp_path / "calib", np.zeros((4, 10), np.float32), np.zeros(4, np.int64))
    with pytest.raises(BuildError, match=r"calibrates image models.*\(4, 10\)"):
        recipe.write_calib(tmp_path / "calib", tmp_path / "c.npy", samples=4)


def test_only_int8_applies_and_the_runtime_refuses_to_run_here():
    for p in ("fp32", "fp16", "bf16"):
        assert "INT8" in support({}, "hailo", p).skipped
    assert support({}, "hailo", "int8-entropy").skipped is None
    rt = get_runtime("hailo")
    assert rt.artifact_suffix == ".hef"
    with pytest.raises(BuildError, match="hailo_platform"):
        rt.load(tmp := Path("model.hef"))
    with pytest.raises(BuildError, match="build host through the device agent"):
        rt.build(tmp, "int8-minmax", tmp, None)


def test_config_names_a_level_out_of_range():
    cfg = from_dict(Config, {})
    bad = dataclasses.replace(
        cfg, target={**cfg.target, "h": Target(runtime="hailo", hailo=Hailo(optimization_level=7))}
    )
    with pytest.raises(ConfigError, match=r"target\.h\.hailo\.optimization_level.*0-4"):
        check(bad)
