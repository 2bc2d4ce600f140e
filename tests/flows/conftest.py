"""Prefect's test harness (a temporary server and database, ~10 s to start), once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
