"""The report's pieces: the summary rows read from the stages' records
(:mod:`~tasks.reporting.summary`), how they read in a table (:mod:`~tasks.reporting.format`), each
target's winner (:mod:`~tasks.reporting.selection`), the HTML page (:mod:`~tasks.reporting.html`)
and its plots and CSV series (:mod:`~tasks.reporting.plots`)."""
