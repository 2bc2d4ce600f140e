"""Releases to the fleet (issue 17): signed bundles of a pipeline run's accepted winners
(``keys``, ``manifest``, ``golden``, ``bundle``, ``make``: ``edgeforge release``), their container
recipes, and the host side of deploying, gating and monitoring them."""
