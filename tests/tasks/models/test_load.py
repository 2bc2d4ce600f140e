"""Loading the user's checkpoint in every supported format, and the errors for bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.mnist import MnistCNN
from tasks.config.schema import Model
from tasks.models.load import CheckpointError, load_torch_model, resolve_arch

# TorchScript is a supported input format even though torch deprecates it
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

X = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 1, 28, 28), dtype=np.float32))


@pytest.fixture(scope="module")
def net() -> MnistCNN:
    torch.manual_seed(0)
    m = MnistCNN()
    with torch.no_grad():  # non-trivial BN statistics, so that eval mode matters
        for bn in (m.features[1], m.features[5]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _same(module, ref) -> None:
    assert not module.training
    with torch.no_grad():
        torch.testing.assert_close(module(X), ref(X), rtol=0, atol=1e-5)


def _load(path, **kw):
    return load_torch_model(Model(checkpoint=str(path), **kw))


def test_state_dict_registered_arch(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "m.pt")
    module = _load(tmp_path / "m.pt", arch="mnist_cnn")
    assert isinstance(module, MnistCNN)
    _same(module, net)


def test_state_dict_module_path_arch(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "m.pt")
    module = _load(tmp_path / "m.pt", arch="examples.mnist:MnistCNN")
    assert isinstance(module, MnistCNN)
    _same(module, net)


def test_state_dict_wrapper(tmp_path, net):
    torch.save({"state_dict": net.state_dict(), "epoch": 3, "optimizer": {}}, tmp_path / "m.pt")
    _same(_load(tmp_path / "m.pt"), net)


def test_arch_kwargs(tmp_path):
    torch.manual_seed(1)
    small = MnistCNN(width=8).eval()
    torch.save(small.state_dict(), tmp_path / "m.pt")
    module = _load(tmp_path / "m.pt", arch_kwargs={"width": 8})
    _same(module, small)


def test_torchscript_script(tmp_path, net):
    torch.jit.save(torch.jit.script(net), str(tmp_path / "m.ts"))
    _same(_load(tmp_path / "m.ts", format="torchscript", arch=None), net)


def test_torchscript_trace(tmp_path, net):
    torch.jit.save(torch.jit.trace(net, X), str(tmp_path / "m.ts"))
    _same(_load(tmp_path / "m.ts", format="torchscript", arch=None), net)


def test_pt2(tmp_path, net):
    ep = torch.export.export(net, (X,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    module = _load(tmp_path / "m.pt2", format="pt2", arch=None)
    with torch.no_grad():
        torch.testing.assert_close(module(X), net(X), rtol=0, atol=1e-5)
        assert module(X[:1]).shape == (1, 10)


def test_whole_pickled_module_refused_unless_trusted(tmp_path, net):
    torch.save(net, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="model.trust_checkpoint") as e:
        _load(tmp_path / "m.pt")
    assert "weights_only" in str(e.value)
    assert "\x1b" not in str(e.value)  # torch's text carries terminal escape codes (bold)
    assert "GLOBAL examples.mnist.MnistCNN" in str(e.value)  # the cause, not torch's "two options" preamble
    module = _load(tmp_path / "m.pt", trust_checkpoint=True)
    assert isinstance(module, MnistCNN)
    _same(module, net)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as e:
        _load(tmp_path / "absent.pt")
    assert "absent.pt" in str(e.value) and "model.checkpoint" in str(e.value)


def _truncated(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])


def _random(tmp_path, net, seed=0):
    (tmp_path / "m.pt").write_bytes(np.random.default_rng(seed).bytes(4096))


def _empty(tmp_path, net):
    (tmp_path / "m.pt").write_bytes(b"")


def _text(tmp_path, net):
    (tmp_path / "m.pt").write_text("hello world\n")


@pytest.mark.parametrize("trust", [False, True], ids=["weights_only", "trusted"])
@pytest.mark.parametrize("make", [_truncated, _random, _empty, _text], ids=["truncated", "random", "empty", "text"])
def test_corrupt_state_dict_file(tmp_path, net, make, trust):
    make(tmp_path, net)
    with pytest.raises(CheckpointError, match="cannot read as a state_dict checkpoint") as e:
        _load(tmp_path / "m.pt", trust_checkpoint=trust)
    msg = str(e.value)
    assert str(tmp_path / "m.pt") in msg
    assert "is the file complete" in msg
    assert "trust_checkpoint=true" not in msg  # trusting a corrupt file would not help


# Random files hit many different errors inside torch.load (torch 2.13): unsupported opcodes
# (UnpicklingError), an empty stack (IndexError), a missing memo entry (KeyError), bad UTF-8
# (UnicodeDecodeError), a huge length (OverflowError), a bad integer (ValueError).
@pytest.mark.parametrize("seed", [0, 17, 35, 38, 54, 62, 73])
def test_random_bytes_always_a_checkpoint_error(tmp_path, net, seed):
    _random(tmp_path, net, seed)
    for trust in (False, True):
        with pytest.raises(CheckpointError, match="cannot read"):
            _load(tmp_path / "m.pt", trust_checkpoint=trust)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
@pytest.mark.parametrize("make", [_truncated, _random], ids=["truncated", "random"])
def test_corrupt_archive_formats(tmp_path, net, make, fmt):
    make(tmp_path, net)
    with pytest.raises(CheckpointError, match=f"cannot read as a {fmt} checkpoint"):
        _load(tmp_path / "m.pt", format=fmt, arch=None)


def test_state_dict_given_as_torchscript(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="cannot read as a torchscript checkpoint"):
        _load(tmp_path / "m.pt", format="torchscript", arch=None)


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="expected a state_dict, found list"):
        _load(tmp_path / "m.pt")


def test_weights_do_not_fit_arch(tmp_path):
    torch.save(MnistCNN(width=8).state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="weights do not fit model.arch 'mnist_cnn'") as e:
        _load(tmp_path / "m.pt")
    assert "size mismatch" in str(e.value)


def test_missing_keys(tmp_path, net):
    state = dict(net.state_dict())
    state.pop("head.3.bias")
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="head.3.bias"):
        _load(tmp_path / "m.pt")


def test_unknown_arch_lists_registered(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="resnet9") as e:
        _load(tmp_path / "m.pt", arch="resnet9")
    from tasks.models.load import ARCHS

    listed = str(e.value).split("registered: ")[1].split(" (")[0].split(", ")
    assert listed == sorted(ARCHS.names()) and {"mnist_centernet", "mnist_cnn", "mnist_unet"} <= set(listed)
    assert "module:Class" in str(e.value)


@pytest.mark.parametrize("name", ["examples.nope:Net", "examples.mnist:Nope"])
def test_unimportable_arch(name):
    with pytest.raises(CheckpointError, match="cannot import"):
        resolve_arch(name)


def test_onnx_format_has_no_torch_model(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="no PyTorch model"):
        _load(tmp_path / "m.onnx", format="onnx")
