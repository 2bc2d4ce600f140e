"""Image folders without class subfolders: ``masks`` (each image beside a same-named PNG class map,
VOC style) and ``images`` (unlabelled, for ``model.task: fidelity``).

``masks``: ``data.<split>.path`` is the image folder, ``data.<split>.annotations`` the folder of
class maps: ``<annotations>/<same relative path>.png``, one class id per pixel (0..254, 255 =
ignore), a palette (VOC) or grayscale PNG of the image's size; resized nearest-neighbour with the
image. Classes are named by id, ``0`` to the largest id seen. A split whose masks hold only 0 and
255 is refused: 255 is "ignore", so a binary mask saved as 0/255 would score nothing (save the
foreground as 1).

``images``: every image under ``data.<split>.path`` (subfolders included), label -1, no classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.errors import DataError
from tasks.data.images import image_files
from tasks.data.sources import FileSource

IGNORE = 255


def _folder_images(root: Path, what: str) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: no such image folder ({what})")
    files = image_files(root, recursive=True)
    if not files:
        raise DataError(f"{root}: holds no images ({what})")
    return files


class MaskSource(FileSource):
    def __init__(self, images: str | Path, masks: str | Path, gray: bool) -> None:
        self.root, self.masks, self.gray = Path(images), Path(masks), gray
        self.files = _folder_images(self.root, "data.<split>.path of a masks source")
        if not self.masks.is_dir():
            raise DataError(f"{self.masks}: no such folder of class maps (data.<split>.annotations)")
        self.seen: set[int] = set()

    @property
    def classes(self) -> list[str]:  # type: ignore[override]
        return [str(c) for c in range(max(self.seen - {IGNORE}, default=0) + 1)]

    def mask_file(self, i: int) -> Path:
        return (self.masks / self.files[i].relative_to(self.root)).with_suffix(".png")

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        path = self.mask_file(i)
        if not path.is_file():
            raise DataError(f"{path}: no class map for image {self.files[i]} (a same-named .png under annotations)")
        try:
            with Image.open(path) as im:
                if im.mode not in ("P", "L", "1", "I", "I;16"):
                    raise DataError(
                        f"{path}: a {im.mode} image is not a class map; save one class id per pixel "
                        "(palette or grayscale PNG)"
                    )
                mask = np.asarray(im).astype(np.int64)  # a 1-bit PNG reads as bool: foreground 1
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: cannot read class map ({e})") from e
        if mask.max(initial=0) > IGNORE or mask.min(initial=0) < 0:
            raise DataError(f"{path}: class ids outside 0..255 ({int(mask.min())}..{int(mask.max())})")
        if mask.shape != tuple(hw):
            raise DataError(
                f"{path}: class map is {mask.shape[0]}x{mask.shape[1]} but its image is {hw[0]}x{hw[1]} (h x w)"
            )
        self.seen.update(np.unique(mask).tolist())
        return mask.astype(np.uint8)

    def finish(self, where: str) -> None:
        if self.seen and self.seen <= {0, IGNORE} and IGNORE in self.seen:
            raise DataError(
                f"{where}: the class maps under {self.masks} hold only 0 and 255, and 255 means ignore: "
                "save binary masks with the foreground as 1 (and 255 only where a pixel is not scored)"
            )


class UnlabelledSource(FileSource):
    classes: list[str] = []
    labelled = False

    def __init__(self, path: str | Path, gray: bool) -> None:
        self.root, self.gray = Path(path), gray
        self.files = _folder_images(self.root, "data.<split>.path of an images source")

    def label(self, i: int, hw: tuple[int, int]) -> np.ndarray:
        return np.int64(-1)
