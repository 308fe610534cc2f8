"""Reading a configuration file's YAML: every way it can fail is one line naming the file.

Every configuration loader (lifecycle, SLA policy, field mapping, quality, reports, the report
schedules) reads its file here, so a missing file, a folder, a device or pipe, a file over
`MAX_BYTES`, a binary or non-UTF-8 file, broken YAML, YAML nested past `MAX_DEPTH` (libyaml would
crash the process) or aliased past `MAX_VALUES` ("billion laughs") each end in the loader's own
`LeadSlaError` with one line saying what and where - never a traceback, never a hang. The tree
returned is plain YAML (mappings, lists, scalars); what it must contain is the loader's business.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from leadsla.errors import LeadSlaError

#: libyaml's safe loader when PyYAML has it (about ten times faster), else PyYAML's own.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: The largest configuration file read (the shipped ones: a few kB).
MAX_BYTES = 5_000_000
#: The most values (mappings, lists and scalars, aliases counted each time they are used) a
#: configuration file may hold: the shipped files hold a few thousand.
MAX_VALUES = 200_000
#: The deepest nesting of mappings and lists a configuration file may have (the shipped ones: 7).
#: Checked on the parser's events before anything is built: libyaml builds a deeply nested tree
#: by recursion and crashes the process (a segmentation fault) at some 100,000 levels.
MAX_DEPTH = 64


def read_yaml_file(path: str | Path, error: type[LeadSlaError], what: str) -> Any:
    """The YAML tree in the file at `path` (None for an empty file).

    Args:
        error: the loader's error type, raised for every problem.
        what: the file's role in words, e.g. "the SLA policy".

    Raises:
        error: the file cannot be read, is not UTF-8 text, is not YAML, or is too large a tree;
            the message is one line naming the file.
    """
    path = Path(path)
    try:
        kind = path.stat().st_mode
        if stat.S_ISDIR(kind):
            raise error(f"{path}: cannot read {what}: it is a folder, not a file")
        if not stat.S_ISREG(kind):  # a device or a pipe: /dev/zero never ends, a FIFO waits forever
            raise error(f"{path}: cannot read {what}: not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{path}: cannot read {what}: the file does not exist") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{path}: {what} is larger than {MAX_BYTES // 1_000_000} MB: not a configuration file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: {what} is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}): save it as a "
            "UTF-8 YAML file"
        ) from None
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[LeadSlaError]) -> Any:
    """The YAML tree in `text` (see `read_yaml_file`); `source` names it in the message."""
    try:
        too_deep = _deeper_than(text, MAX_DEPTH)
        tree = None if too_deep else yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}: not valid YAML{where}: {one_line(problem)}") from None
    except RecursionError:
        too_deep = True
    if too_deep:
        raise error(
            f"{source}: mappings and lists nested more than {MAX_DEPTH} deep: not a configuration file"
        )
    if _too_many_values(tree, MAX_VALUES):
        raise error(
            f"{source}: more than {MAX_VALUES:,} values (counting each use of an alias): not a "
            "configuration file"
        )
    return tree


def _deeper_than(text: str, limit: int) -> bool:
    """Whether mappings and lists nest deeper than `limit` in `text`, read from the parser's events
    (nothing is built).

    Raises:
        yaml.YAMLError: the text is not YAML.
    """
    depth = 0
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > limit:
                return True
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return False


def _too_many_values(tree: Any, limit: int) -> bool:
    """Whether `tree` holds more than `limit` values, stopping as soon as it does (an aliased tree
    can expand to billions: never walk it whole)."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces made single spaces."""
    return " ".join(str(text).split())


def shown_key(key: Any) -> str:
    """A mapping key as a message shows it: as written when it is plain text, else its repr (a
    key holding a line break or a list must not break the message's one line)."""
    text = str(key)
    return (
        text if isinstance(key, str) and text and text.isprintable() and text == text.strip() else repr(key)
    )
