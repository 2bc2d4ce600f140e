"""MLflow tracking: the pipeline's runs (:mod:`~tasks.tracking.runs`), the registry of each device's
winner (:mod:`~tasks.tracking.registry`), how runs read in the UI (:mod:`~tasks.tracking.ui`), and the
tracking URI (:mod:`~tasks.tracking.uri`).

MLflow's usage telemetry (on by default since MLflow 3.x: a background thread that posts events to
Databricks) is switched off unless the user sets ``MLFLOW_DISABLE_TELEMETRY`` themselves: a
deployment pipeline does not report on its users, and on an offline build machine every logged
call paid for the attempt (~1.6 s of the report stage here)."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
