"""Settings for the Prefect servers EdgeForge starts: the temporary one that ``edgeforge run`` and
``edgeforge watch --once`` get in a subprocess (Prefect's ``SubprocessASGIServer``, which inherits
``os.environ``) and the one ``edgeforge watch`` serves its schedule from (:func:`flows.watch.local_server`).

Their telemetry heartbeat (``prefect.server.services.telemetry.send_telemetry_heartbeat``, on when
``server.analytics_enabled``) runs as the server starts: it writes a session row into the fresh sqlite
database while the server is still setting up (``database is locked``, a full traceback), then posts
to a host this network cannot reach (an ERROR line). Either way a successful run printed failures.
"""

from __future__ import annotations

# setting (as Prefect's Settings.server names it) -> its environment variable and EdgeForge's value
DEFAULTS = {"analytics_enabled": ("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}


def server_env() -> dict[str, str]:
    """Environment variables for a Prefect server EdgeForge starts: each of :data:`DEFAULTS` the user
    has not set anywhere Prefect reads settings from (the environment, the active profile, .env,
    pyproject.toml): those are in the settings' ``model_fields_set``, and a server started from here
    receives them (Prefect passes its set settings on), so they are left alone."""
    from prefect.settings import get_current_settings

    explicit = get_current_settings().server.model_fields_set
    return {var: value for field, (var, value) in DEFAULTS.items() if field not in explicit}
