"""Which :class:`~tasks.data.sources.Source` a ``data.<split>`` config opens."""

from __future__ import annotations

from tasks.config import Config
from tasks.data.errors import DataError
from tasks.data.sources import ArraySource, ImageFolderSource, Source, load_loader_split, load_npz


def open_split(cfg: Config, split: str) -> Source:
    """The source of ``data.<split>`` (every sample, before ``limit``); raises :class:`DataError`
    when it is empty or cannot be read."""
    src = getattr(cfg.data, split)
    gray = cfg.model.input.channel_order == "gray"
    where = f"data.{split}"
    if src.source == "loader":
        out: Source = ArraySource(load_loader_split(cfg.data.loader, split, cfg.data.seed))
    elif src.source == "npz":
        out = ArraySource(load_npz(src.path))
    elif src.source == "imagefolder":
        out = ImageFolderSource(src.path, gray)
    elif src.source == "coco":
        from tasks.data.coco import CocoSource

        out = CocoSource(src.path, src.annotations, cfg.model.task, cfg.data.category_ids, gray)
    elif src.source == "yolo":
        from tasks.data.yolo import YoloSource

        out = YoloSource(src.path, src.split, cfg.model.task, gray)
    elif src.source == "masks":
        from tasks.data.masks import MaskSource

        out = MaskSource(src.path, src.annotations, gray)
    else:
        from tasks.data.masks import UnlabelledSource

        out = UnlabelledSource(src.path, gray)
    if len(out) == 0:
        raise DataError(f"{where} is empty")
    return out
