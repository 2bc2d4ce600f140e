"""Tests mirroring tasks/ (a package, so that modules here import as tests.tasks.<name>)."""
