"""Prefect flows that drive the DVC stages (pipeline, checkpoint watcher, CLI).

Not implemented yet: they arrive with the orchestration issue. ``dvc repro`` is the driver
today; the flows will run the same stages read from ``dvc.yaml``, never a second DAG.
"""
