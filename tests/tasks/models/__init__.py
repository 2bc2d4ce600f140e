"""Package marker: gives this folder's test modules unique names (tests/tasks/config and tests/tasks/models both hold test_load.py)."""
