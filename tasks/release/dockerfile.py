"""The checks a release's Dockerfile must pass (issue 17, deployment contract), without Docker:
every instruction is a Dockerfile instruction, FROM comes first and is pinned, every ``pip install``
pins ``package==version``, and exec forms are JSON lists of strings."""

from __future__ import annotations

import json
import re
import shlex

DOCKERFILE_INSTRUCTIONS = frozenset(
    "FROM RUN CMD LABEL MAINTAINER EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD "
    "STOPSIGNAL HEALTHCHECK SHELL".split()
)
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[0-9][A-Za-z0-9.+!_-]*$")


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile, by the rules its bundle promises: every instruction is a
    Dockerfile instruction, FROM comes first with a pinned tag (not ``latest``) or digest, every
    ``pip install`` names ``package==version`` only, and exec-form CMD/ENTRYPOINT is a JSON list."""
    logical, problems, buf = [], [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):  # also within a continuation, as Docker does
            continue
        buf += line[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(buf.strip())
            buf = ""
    if buf.strip():
        problems.append(f"the last instruction ends in a line continuation: {buf.strip()[:60]!r}")
    for i, instr in enumerate(logical):
        word, _, args = instr.partition(" ")
        word, args = word.upper(), args.strip()
        if word not in DOCKERFILE_INSTRUCTIONS:
            problems.append(f"unknown instruction {word!r}")
        elif i == 0 and word != "FROM":
            problems.append(f"the first instruction is {word}, not FROM")
        if word == "FROM":
            image = args.split()[0] if args else ""
            name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
            if "@sha256:" not in image and (not tag or tag == "latest"):
                problems.append(f"FROM {image!r} is not pinned to a version tag")
        words = _exec_form(args) if word in ("RUN", "CMD", "ENTRYPOINT") and args.startswith("[") else None
        if words is False:
            problems.append(f"{word}'s exec form is not a JSON list of strings")
        if word == "RUN" and words is not False:
            specs = _pip_specs(words or shlex.split(re.sub(r"&&|\|\||\||;", " ; ", args)))
            problems += [f"pip install {spec!r} is not pinned (package==version)" for spec in specs]
    if not logical:
        problems.append("no instruction")
    return problems


def _exec_form(args: str) -> list[str] | bool:
    """An exec-form instruction's argv, or False when it is not a JSON list of strings."""
    try:
        words = json.loads(args)
    except ValueError:
        return False
    return words if isinstance(words, list) and all(isinstance(w, str) for w in words) else False


def _pip_specs(words: list[str]) -> list[str]:
    """The unpinned requirement specs of every ``pip install`` in a command's words (``;`` separates
    shell commands; options skipped; ``-r``/``-c`` files count as unpinned: their pins are not in the
    Dockerfile)."""
    bad, i = [], 0
    while i < len(words):
        if words[i].endswith("pip") or words[i] == "pip3":
            if i + 1 < len(words) and words[i + 1] == "install":
                i += 2
                while i < len(words) and words[i] != ";":
                    w = words[i]
                    if w in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
                        bad.append(" ".join(words[i : i + 2]))
                        i += 1
                    elif not w.startswith("-") and not PINNED.match(w):
                        bad.append(w)
                    i += 1
        i += 1
    return bad
