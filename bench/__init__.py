"""EdgeForge benchmark scripts (not tests: they print figures and never assert speed).

See bench/README.md. Run them from the repository root with the project's virtualenv, e.g.
``.venv/bin/python bench/ort_vs_torch.py --quick``.
"""
