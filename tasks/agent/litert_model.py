"""LiteRT (TFLite) on the device: a ``.tflite`` model run by ``ai_edge_litert``'s Interpreter.

The artifact is what ``tasks/runtimes/litert_convert.py`` writes on the host: one signature
(``serving_default``) whose input is the ONNX model's input, float32 NCHW, and whose outputs are the
ONNX outputs under their ONNX names, in the ONNX layout (the converter transposed back what onnx2tf
laid out as NHWC), float32 at every precision (an INT8 model quantizes its input and dequantizes its
outputs inside the graph). So a batch goes in and comes out exactly as with ONNX Runtime.

The Interpreter applies its default delegate, XNNPACK (``OpResolverType.AUTO``), to every op it
supports, with ``threads`` threads (None: the Interpreter's own default). Stdlib only at import time
(Python >= 3.8): ``ai_edge_litert`` and numpy are imported when a model is loaded. Registers itself in
``agent.MODELS``/``agent.VERSIONS`` as ``litert`` at import.
"""

from __future__ import annotations

if __package__:
    from . import agent
else:  # uploaded next to agent.py and run from there
    import agent

NAME = "litert"
INSTALL = "python3 -m pip install ai-edge-litert (the LiteRT runtime: Interpreter + XNNPACK)"
SIGNATURE = "serving_default"


def version() -> str:
    """The installed ai-edge-litert's version (package metadata: nothing is imported)."""
    v = agent._version("ai-edge-litert", "ai-edge-litert-nightly")
    if v is None:
        agent._import("ai_edge_litert.interpreter", INSTALL)  # raises missing_runtime, saying how to install
    return v or "unknown"


class LiteRTModel:
    """A loaded ``.tflite``: ``infer(x)`` takes a float32 (B, C, H, W) batch and returns
    ``{onnx output name: float32 array}``. ``min_batch``/``max_batch``: 1/None when the model's batch
    dimension is dynamic (the input is resized, and the tensors re-allocated, when the batch changes),
    else the fixed batch. ``choices`` (the build's device choices) are accepted for the contract: LiteRT
    has no session options EdgeForge sets."""

    def __init__(self, path, threads=None, choices=None) -> None:
        lite, self._np = agent._import("ai_edge_litert.interpreter", INSTALL), agent._import("numpy")
        try:
            self._threads = int(threads) if threads else None
            self._it = lite.Interpreter(model_path=str(path), num_threads=self._threads)
            # {key: {"inputs": {name: tensor index}, "outputs": {...}}}: the indices SignatureRunner uses, read
            # without one (a runner holds views of the tensors, and resizing then refuses to run)
            signatures = self._it._get_full_signature_list()
        except (ValueError, RuntimeError) as e:  # a file that is no TFLite flatbuffer, an op it lacks
            raise agent.AgentError("failed", f"ai_edge_litert cannot load {path}: {agent._first_line(e)}") from e
        if SIGNATURE not in signatures:
            raise agent.AgentError(
                "bad_input",
                f"{path}: no {SIGNATURE!r} signature (it has {sorted(signatures)}); EdgeForge runs the .tflite its "
                "LiteRT conversion writes (tasks/runtimes/litert_convert.py), whose signature names the ONNX inputs "
                "and outputs",
            )
        ins, outs = signatures[SIGNATURE]["inputs"], signatures[SIGNATURE]["outputs"]
        agent._single_input(path, list(ins))
        self.input_name = next(iter(ins))
        self._in = ins[self.input_name]
        details = {d["index"]: d for d in self._it.get_input_details() + self._it.get_output_details()}
        names = {i: n for n, i in outs.items()}
        # the outputs in the graph's order
        self._out = [(names[d["index"]], d["index"]) for d in self._it.get_output_details() if d["index"] in names]
        self.output_names = [n for n, _ in self._out]
        batch = int(details[self._in]["shape_signature"][0])
        self.min_batch, self.max_batch = (1, None) if batch < 0 else (batch, batch)
        self.data_dependent = [n for n, i in self._out if len(details[i]["shape_signature"]) == 0]
        self._shape = None
        self._it.allocate_tensors()

    def _put(self, x) -> None:
        x = self._np.ascontiguousarray(x, dtype=self._np.float32)
        if x.shape != self._shape:  # a new batch size: resize once, then every call of that size reuses it
            try:
                self._it.resize_tensor_input(self._in, list(x.shape), strict=True)
            except (ValueError, RuntimeError) as e:  # strict: only a dimension the model left dynamic may change
                raise agent.AgentError(
                    "bad_input",
                    f"the model takes {list(self._it.get_input_details()[0]['shape'])}, not {list(x.shape)}",
                ) from e
            self._it.allocate_tensors()
            self._shape = x.shape
        self._it.set_tensor(self._in, x)

    def _get(self, _=None) -> dict:
        # get_tensor copies out of the interpreter's arena (the next invoke overwrites it)
        return {n: self._np.asarray(self._it.get_tensor(i), dtype=self._np.float32) for n, i in self._out}

    def infer(self, x) -> dict:
        self._put(x)
        self._it.invoke()
        return self._get()

    def describe(self) -> dict:
        """What the device ran (the build's check records it): ``int8_ops``/``float_ops``, the
        interpreter's ops whose outputs are int8 / not (an INT8 build whose ops all stay float shows),
        ``delegate`` and ``threads``. Counted before delegation: XNNPACK then takes the ops it supports."""
        np, it = self._np, self._it
        dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
        counts = {"int8_ops": 0, "float_ops": 0}
        for op in it._get_ops_details():
            int8 = any(dtypes.get(i) == np.int8 for i in op["outputs"])
            counts["int8_ops" if int8 else "float_ops"] += 1
        return {**counts, "delegate": "XNNPACK (the Interpreter's default)", "threads": self._threads}

    #: what each of :meth:`steps` does, for the end-to-end record
    copies = (
        "Interpreter.set_tensor: the float32 batch copied into the input tensor (resized when the batch changes)",
        "Interpreter.invoke (XNNPACK delegate)",
        "Interpreter.get_tensor: each output copied out, as float32",
    )

    def steps(self) -> list:
        """``infer`` as three steps to time apart (``agent.time_chain``): ``input_copy`` copies the batch
        into the interpreter's input tensor (``set_tensor``), ``compute`` runs the graph (``invoke``),
        ``output_copy`` copies every output out (``get_tensor``) as float32; its result is ``infer``'s."""
        return [("input_copy", self._put), ("compute", lambda _: self._it.invoke()), ("output_copy", self._get)]


agent.MODELS[NAME] = LiteRTModel
agent.VERSIONS[NAME] = version
