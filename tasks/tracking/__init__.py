"""MLflow tracking: the pipeline's runs (:mod:`~tasks.tracking.runs`), the registry of each target's
winner (:mod:`~tasks.tracking.registry`), how runs read in the UI (:mod:`~tasks.tracking.ui`), and the
tracking URI (:mod:`~tasks.tracking.uri`)."""
