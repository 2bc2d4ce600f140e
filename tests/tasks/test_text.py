"""Terminal escape codes are stripped from third-party text put into EdgeForge's messages."""

from __future__ import annotations

import pytest

from tasks.registry import UnknownName
from tasks.stage import StageError, message
from tasks.text import plain


@pytest.mark.parametrize(
    "text, want",
    [
        ("do this \x1b[1monly if\x1b[0m trusted", "do this only if trusted"),  # torch's weights_only text
        ("\x1b[96mThis is step 1/3\x1b[0m", "This is step 1/3"),  # torch.onnx's TorchExportError
        ("\x1b[38;5;196mred\x1b[m and \x1b[2K", "red and "),
        ("\x1b]8;;https://x\x07link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, BEL and ST ended
        ("cut off \x1b[1", "cut off [1"),  # no ESC survives a sequence cut by truncation
        ("[1m is text, not a code", "[1m is text, not a code"),
    ],
)
def test_plain(text, want):
    assert plain(text) == want


def test_stage_message_is_plain():
    assert message(StageError("a \x1b[1mbold\x1b[0m cause")) == "a bold cause"
    assert message(UnknownName("key \x1b[31mx\x1b[0m")) == "key x"  # and without KeyError's quotes
