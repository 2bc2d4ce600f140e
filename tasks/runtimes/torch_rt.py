"""PyTorch eager as a runtime: the FP32 reference for parity and evaluation, and the
baseline of the benchmark. It has no build step: its artifact is the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.runtimes.base import BuildError, BuildOptions, Built, Runtime, Session


class TorchSession(Session):
    def __init__(self, module, input_name: str, output_names: list[str], threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._m = module
        self.input_name = input_name
        self.output_names = list(output_names)

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._m(torch.from_numpy(x if x.flags.writeable else np.array(x)))  # mmap'd splits are read-only
        outs = out if isinstance(out, (tuple, list)) else [out]
        if len(outs) != len(self.output_names):
            raise BuildError(
                f"the model returned {len(outs)} outputs; model.outputs names {len(self.output_names)}: "
                f"{self.output_names}"
            )
        return {n: o.detach().float().numpy() for n, o in zip(self.output_names, outs)}


class TorchRuntime(Runtime):
    name = "torch"

    def version(self) -> str:
        import torch

        return torch.__version__

    def build(self, onnx_path: Path, precision: str, out_dir: Path, opts: BuildOptions) -> Built:
        raise BuildError("the torch runtime runs the checkpoint itself; it builds nothing")

    def load(self, artifact: Path, threads: int | None = None, choices: dict | None = None) -> Session:
        raise BuildError("load the torch model with TorchRuntime.session(model_cfg)")

    def session(self, model_cfg, threads: int | None = None) -> TorchSession:
        from tasks.models.load import load_torch_model

        return TorchSession(load_torch_model(model_cfg), model_cfg.input.name, model_cfg.outputs, threads)
