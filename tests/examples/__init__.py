"""Tests of the bundled examples (a package, so that modules here import as tests.examples.<name>)."""
