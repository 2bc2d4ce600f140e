"""``release-install`` on the device: a staged bundle verified (signature, every file, nothing more) before
anything else, its artifact used as is when ``artifact.compatible`` matches this device's probe, else rebuilt
from ``source.onnx`` with the bundle's recipe (the agent's own build), smoke-tested on the golden samples,
then renamed into ``releases/<version>-<bundle sha[:12]>``. A failure leaves the staging folder as it was
and nothing under ``releases/``. Stdlib only at import time."""

from __future__ import annotations

import os
import time
from pathlib import Path

if __package__:
    from . import agent
    from . import release_store as store
else:  # inside the agent's zipapp: top-level modules
    import agent
    import release_store as store


def mismatches(compatible: dict, probe: dict) -> list:
    """What of ``artifact.compatible`` this device's probe does not match, as ``key: bundle X, device Y``.
    Keys: ``runtime`` (the device has it), ``<runtime>_version`` (the probe's ``<runtime>``), the
    GPU's ``gpu_compute_capability`` (any of the device's GPUs; null: the validation device had none, and
    neither may this one), else a probe key as is (``l4t``, ...)."""
    have = dict(probe)
    have["gpu_compute_capability"] = sorted({g.get("compute_capability") for g in probe.get("gpu") or []})
    out = []
    for key, want in sorted((compatible or {}).items()):
        if key == "runtime":
            got = want if probe.get(want) else None
        elif key.endswith("_version") and key[: -len("_version")] in probe:
            got = probe[key[: -len("_version")]]
        else:
            got = have.get(key)
        if isinstance(got, list) and want is None:
            got = got or None
        if got != want and not (isinstance(got, list) and want in got):
            out.append(f"{key}: bundle {want}, device {got}")
    return out


def load(runtime: str, path: Path, recipe: dict):
    """The agent's model for ``runtime`` (the build's threads and device choices from its recipe)."""
    choices = recipe.get("choices") or {}
    if runtime == "onnxruntime":
        return agent.OrtModel(path, recipe.get("threads"), choices=choices)
    if runtime == "openvino":
        return agent.OvModel(path, recipe.get("threads"), choices.get("single_stream"))
    return agent.TrtModel(path, recipe.get("plugins") or [])


def smoke(folder: Path, manifest: dict, runtime: str, artifact: Path) -> dict:
    """The golden inputs (under ``folder``) through ``artifact``: every golden output within atol + rtol,
    but for a fraction ``max_outside`` of its elements; kind ``smoke`` naming the output otherwise.
    Returns ``{max_abs, outside: {output: fraction}, samples}``."""
    np, golden = agent._import("numpy"), manifest.get("golden") or {}
    model = load(runtime, artifact, manifest["artifact"].get("recipe") or {})
    x = np.asarray(np.load(str(folder / golden["inputs"]), allow_pickle=False), dtype=np.float32)
    bs = max(1, getattr(model, "min_batch", 1) or 1)
    got = agent.infer_all(model, (x[i : i + bs] for i in range(0, len(x), bs)))
    atol, rtol, limit = float(golden["atol"]), float(golden["rtol"]), float(golden.get("max_outside") or 0.0)
    max_abs, outside = 0.0, {}
    with np.load(str(folder / golden["outputs"]), allow_pickle=False) as want:
        for name in want.files:
            w, g = want[name], got.get(name)
            if g is None or g.shape != w.shape:
                shape = None if g is None else g.shape
                store.fail("smoke", f"output {name}: the artifact gives {shape}, the golden outputs {w.shape}")
            bad = ~np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
            outside[name] = float(bad.mean()) if bad.size else 0.0
            if bad.size:
                max_abs = max(max_abs, float(np.nanmax(np.abs(g.astype(np.float64) - w))))
            if outside[name] > limit:
                store.fail(
                    "smoke",
                    f"output {name}: {outside[name]:.2%} of its elements differ from the golden outputs by more "
                    f"than atol {atol} + rtol {rtol} (max_outside {limit:.2%}; max |diff| {max_abs:.3g})",
                )
    return {"max_abs": max_abs, "outside": outside, "samples": int(len(x))}


def rebuild(root: Path, stage: Path, art: dict, bundle: str, trtexec=None) -> tuple:
    """``source.onnx`` built with the recipe in ``root/builds/<bundle>``: ``(artifact path, build log tail)``.
    A TensorRT recipe's trtexec ``argv`` names the staged files as ``{source}`` and ``{calibration_cache}``;
    its first element (the validation device's trtexec) becomes ``trtexec``, this device's, when given."""
    out, recipe = root / "builds" / bundle, dict(art.get("recipe") or {})
    source = stage / store.safe_relpath(art.get("source") or "source.onnx")
    if art.get("runtime") == "tensorrt":
        cache = str(stage / store.safe_relpath(art["calibration_cache"])) if art.get("calibration_cache") else ""
        argv = [a.replace("{source}", str(source)).replace("{calibration_cache}", cache) for a in recipe["argv"]]
        argv[0] = trtexec or argv[0]
        recipe.update(argv=argv, engine=recipe.get("engine", "model.engine"), log=recipe.get("log", "build.log"))
    res = agent.cmd_build({**recipe, "runtime": art.get("runtime"), "onnx": str(source), "out_dir": str(out)})
    if res.get("exit_code") not in (None, 0) or not res.get("artifact"):
        store.fail("failed", f"rebuilding {source.name} on the device failed (exit {res.get('exit_code')}); see {out}")
    log_file = out / recipe["log"] if recipe.get("log") else None
    tail = log_file.read_text(errors="replace")[-4000:] if log_file and log_file.is_file() else ""
    return out / res["artifact"], tail


def _answer(info: dict, checked: dict, log: str, already: bool, t0: float) -> dict:
    keys = ("release", "rebuilt", "reason", "artifact", "artifact_sha256")
    return {
        **{k: info[k] for k in keys},
        "build_log": log,
        "smoke": checked,
        "already": already,
        "seconds": time.perf_counter() - t0,
    }


def cmd_install(req: dict) -> dict:
    root, t0 = store.root_of(req), time.perf_counter()
    bundle = store.checked_name(req.get("bundle"), store.BUNDLE_SHA, "bundle")
    with store.locked(root):
        for done in sorted((root / "releases").glob(f"*-{bundle[:12]}")):
            if (done / "installed.json").is_file() and store.installed(root, done.name)["bundle_sha256"] == bundle:
                return _answer(store.reverify(root, done.name), {}, "", True, t0)
        stage = root / "staging" / bundle
        manifest, _, _ = store.read_signed(stage, root, bundle)
        art = store.check_manifest(manifest, store.check_files(stage, manifest))
        release = store.checked_name(f"{manifest.get('version')}-{bundle[:12]}", store.RELEASE_ID, "version")
        reasons = mismatches(art.get("compatible"), agent.cmd_probe({"trtexec": req.get("trtexec")}))
        if not art.get("files"):
            reasons.insert(0, "the bundle holds no artifact portable to this class")
        log = ""
        if reasons:
            agent.log(f"rebuilding {art.get('source')}: {'; '.join(reasons)}")
            artifact, log = rebuild(root, stage, art, bundle, req.get("trtexec"))
        else:
            artifact = stage / store.safe_relpath(art["files"][0])
        checked = smoke(stage, manifest, art["runtime"], artifact)
        (root / "releases").mkdir(exist_ok=True)
        partial = root / "releases" / f".partial-{release}"
        os.rename(str(stage), str(partial))
        if reasons:
            os.rename(str(artifact.parent), str(partial / "build"))
        rel = f"build/{artifact.name}" if reasons else artifact.relative_to(stage).as_posix()
        info = {
            "release": release,
            "version": manifest.get("version"),
            "bundle_sha256": bundle,
            "model": manifest.get("model"),
            "class": manifest.get("class"),
            "runtime": art["runtime"],
            "artifact": rel,
            "artifact_sha256": agent.sha256(partial / rel),
            "rebuilt": bool(reasons),
            "reason": "; ".join(reasons) or None,
            "recipe": art.get("recipe"),
            "installed_at": store.now(),
        }
        store.write_json(partial / "installed.json", info)
        os.rename(str(partial), str(root / "releases" / release))
        return _answer(info, checked, log, False, t0)
