"""Print the configuration reference (Markdown) generated from the schema."""
from __future__ import annotations

import dataclasses
import typing

from tasks.config.schema import Config


def _rows(cls: type, prefix: str):
    hints = typing.get_type_hints(cls)
    for fl in dataclasses.fields(cls):
        tp = hints[fl.name]
        default = fl.default if fl.default is not dataclasses.MISSING else fl.default_factory()
        if dataclasses.is_dataclass(tp):
            yield from _rows(tp, f"{prefix}{fl.name}.")
            continue
        if dataclasses.is_dataclass(default):
            default = "(see below)"
        doc = fl.metadata.get("doc", "")
        yield f"| `{prefix}{fl.name}` | `{default!r}` | {doc} |"


def main() -> None:
    print("| key | default | meaning |\n|---|---|---|")
    for row in _rows(Config, ""):
        print(row)


if __name__ == "__main__":
    main()
