"""Third-party text made fit for EdgeForge's one-line messages."""

from __future__ import annotations

import re

# ECMA-48 escape sequences: CSI (colours, bold: "\x1b[1m"), OSC (titles, links; ended by BEL or
# ESC \) and the two-byte ones. torch puts bold into its weights_only error text, for a terminal.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: object) -> str:
    """``str(text)`` without terminal escape sequences (a stray ESC from a cut-off one goes too), so
    that a message reads the same in a log file, a JSON record or a terminal."""
    return _ESCAPES.sub("", str(text)).replace("\x1b", "")
