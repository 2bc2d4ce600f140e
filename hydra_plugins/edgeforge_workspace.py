"""A Hydra plugin that is only a hook: DVC's Hydra composition (``dvc exp run`` with
``hydra.enabled``) puts the repository root on ``sys.path`` while Hydra scans the
``hydra_plugins`` namespace, and Hydra asks every SearchPathPlugin to edit the search path before
it composes. That is before DVC writes params.yaml into the workspace, so a second ``dvc exp run``
is refused there (see tasks/workspace.py). The search path is left as it is."""

from hydra.plugins.search_path_plugin import SearchPathPlugin

# imported now, while the root is on sys.path (DVC takes it off again after the scan)
from tasks.workspace import guard_dvc_exp_run


class EdgeForgeWorkspaceGuard(SearchPathPlugin):
    def manipulate_search_path(self, search_path) -> None:
        guard_dvc_exp_run()
