"""ExecuTorch on the device: a ``.pte`` program (XNNPACK-delegated) run by ExecuTorch's Python runtime.

The program is converted on the host (:mod:`tasks.runtimes.executorch_rt`) with a batch dimension bounded
by ``max_batch`` (XNNPACK plans its memory for the bound), recorded in the program's file name as
``model.b<N>.pte``; a larger batch runs in slices of ``max_batch``. The XNNPACK threadpool is process-wide:
``threads`` resets it (ExecuTorch's ``_unsafe_reset_threadpool``), None keeps its default (one thread per
core). Stdlib only at import time (Python >= 3.8); ``executorch`` is imported when a model loads.
"""

from __future__ import annotations

import re

try:
    from . import agent
except ImportError:  # the zipapp: modules are top-level
    import agent

NAME = "executorch"


def version() -> str:
    return agent._version("executorch") or "unknown"


def max_batch_of(path) -> int | None:
    """The batch bound the program was exported with, from its name ``model.b<N>.pte`` (None: static batch)."""
    m = re.search(r"\.b(\d+)\.pte$", str(path))
    return int(m.group(1)) if m else None


class EtModel:
    """A loaded ``.pte``: float32 NCHW in, every output by name (``output_names`` as the program's outputs
    are ordered; the host stores the ONNX names beside the program as ``<file>.names``, one per line)."""

    def __init__(self, path, threads=None, choices=None) -> None:
        self._np = agent._import("numpy")
        self._torch = agent._import("torch")
        rt = agent._import("executorch.runtime", "executorch")
        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        try:
            program = rt.Runtime.get().load_program(str(path))
            self._method = program.load_method("forward")
        except Exception as e:  # ExecuTorch raises RuntimeError with its error code
            raise agent.AgentError("failed", f"executorch cannot load {path}: {e}") from e
        names = agent._read(str(path) + ".names").split()
        n_out = self._method.metadata.num_outputs()
        self.output_names = names if len(names) == n_out else [f"output_{i}" for i in range(n_out)]
        self.input_name = "input"
        self.min_batch, self.max_batch = 1, max_batch_of(path)
        self.data_dependent = []

    def _run(self, x) -> list:
        return self._method.execute([self._torch.from_numpy(x)])

    def infer(self, x) -> dict:
        np, mb = self._np, self.max_batch or len(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [self._run(x[i : i + mb]) for i in range(0, len(x), mb)]
        return {
            n: np.concatenate([np.asarray(p[k].numpy(), dtype=np.float32) for p in parts])
            for k, n in enumerate(self.output_names)
        }

    #: what each of :meth:`steps` does, for the end-to-end record
    copies = (
        "torch.from_numpy: the float32 batch wrapped as a tensor (no copy)",
        "Method.execute (XNNPACK delegate)",
        "each output tensor's .numpy() copied out, as float32",
    )

    def steps(self) -> list:
        """``infer`` as input copy (the batch wrapped as a tensor: no copy), compute, output copy (float32
        arrays out of ExecuTorch's tensors), for the end-to-end split."""
        np, held = self._np, []

        def put(x) -> None:
            held[:] = [self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))]

        def get(outs) -> dict:
            return {n: np.array(o.numpy(), dtype=np.float32) for n, o in zip(self.output_names, outs)}

        return [("input_copy", put), ("compute", lambda _: self._method.execute(held)), ("output_copy", get)]

    def describe(self) -> dict:
        return {"max_batch": self.max_batch, "outputs": list(self.output_names)}


agent.MODELS[NAME] = EtModel
agent.VERSIONS[NAME] = version
