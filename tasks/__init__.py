"""EdgeForge pipeline stages.

Each ``tasks.<stage>`` module exposes ``run(cfg, ...) -> result`` (pure: no DVC, Prefect or
MLflow) and a thin ``main()`` used by ``python -m tasks.<stage>`` from ``dvc.yaml``.
"""
