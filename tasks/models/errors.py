"""The checkpoint error, apart from the loader: the checkpoint stage raises it without importing
torch or the bundled architectures."""

from __future__ import annotations


class CheckpointError(ValueError):
    """The checkpoint is missing, corrupt or does not fit its declared format."""


class DecoderError(ValueError):
    """A detector's outputs do not fit the decoder named by ``eval.decoder`` (rank, layout, class
    count); the message names the decoder, the shapes seen and what to change."""
