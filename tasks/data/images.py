"""Image files: finding them in a folder and decoding one, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(root: str | Path, recursive: bool) -> list[Path]:
    """Image files (by suffix) in ``root`` (and its subfolders when ``recursive``), sorted by path;
    hidden files and folders are skipped."""
    root = Path(root)
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(
        p
        for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_image(path: str | Path, gray: bool) -> np.ndarray:
    """uint8 ``(h, w)`` (``gray``) or ``(h, w, 3)`` RGB; a file PIL cannot decode (corrupt,
    truncated, not an image) is a :class:`DataError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from e
