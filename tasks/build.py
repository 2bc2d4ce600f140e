"""Stage ``build@<target>-<precision>``: the deployable artifact for one target and precision.

The target's runtime builds it from the precision's ONNX model (``quantize@<precision>``) and
must load it back before the build counts. Outputs: ``artifacts/build/<key>/``
(the artifact plus ``build.json``) and ``metrics/build/<key>.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

from tasks import stage
from tasks.config import Config
from tasks.io import atomic_dir, sha256_file, write_json
from tasks.runtimes import BuildOptions, get_runtime


def out_dir(key: str) -> Path:
    return stage.ARTIFACTS / "build" / key


def metrics_path(key: str) -> Path:
    return stage.METRICS / "build" / f"{key}.json"


def artifact(build_dir: Path) -> Path:
    """The artifact inside a build folder (named in its build.json)."""
    from tasks.io import read_json

    meta = build_dir / "build.json"
    if not meta.is_file():
        raise stage.StageError(f"{build_dir} holds no build (build.json missing); run `dvc repro build`")
    return build_dir / read_json(meta)["artifact"]


def run(cfg: Config, target_name: str, precision: str, onnx_path: Path, out: Path) -> dict:
    """Build ``precision`` for ``target_name`` from ``onnx_path`` (that precision's ONNX) into ``out``."""
    target = cfg.target[target_name]
    rt = get_runtime(target.runtime)
    t0 = time.perf_counter()
    built = rt.build(onnx_path, precision, out, BuildOptions(fp16_keep_io_types=cfg.build.fp16_keep_io_types,
                                                             threads=target.threads))
    meta = {
        "target": target_name,
        "precision": precision,
        "runtime": rt.name,
        "runtime_version": rt.version(),
        "host": target.transport,
        "artifact": built.artifact.name,
        "sha256": sha256_file(built.artifact),
        "size_bytes": built.artifact.stat().st_size,
        "source_onnx_sha256": sha256_file(onnx_path),
        "build_seconds": time.perf_counter() - t0,
        **built.meta,
    }
    write_json(out / "build.json", meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    args = stage.parser("build", matrix=True).parse_args(argv)
    k = stage.key(args.target, args.precision)
    with stage.stage_errors(f"build@{k}", outputs=[out_dir(k), metrics_path(k)]):
        cfg = stage.load(args)
        from tasks.quantize import source

        with atomic_dir(out_dir(k)) as tmp:
            runtime = cfg.target[args.target].runtime
            meta = run(cfg, args.target, args.precision, source(args.precision, runtime), tmp)
        stage.log(f"build@{k}", f"{meta['artifact']} {meta['size_bytes'] / 1e6:.2f} MB in {meta['build_seconds']:.2f} s")
        write_json(metrics_path(k), meta)


if __name__ == "__main__":
    main()
