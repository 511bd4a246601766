"""Load a line config: YAML with line numbers kept, validated by pydantic, every error at once.

Why keep line numbers: a technician editing line.yaml at the line needs "line.yaml:42 devices.coders.
cij1.baud: ..." and not a pydantic traceback. YAML is composed into nodes (which carry marks), turned
into plain data, and a map from key path to line lets each pydantic error point at its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
# A line config has a few hundred values. YAML aliases can make a few lines expand to billions (the
# "billion laughs" bomb) that would spin the CPU in validation: refuse past this many.
MAX_VALUES = 200_000


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top)'}: {self.message}"


class ConfigError(ValueError):
    """One or more config errors, each with file, line and key."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def _construct(node: yaml.Node, path: Loc, lines: dict[Loc, int], seen: list[int]) -> Any:
    seen[0] += 1  # every value counts, also one reached again through an alias
    if seen[0] > MAX_VALUES:
        raise ConfigError([ConfigIssue("", node.start_mark.line + 1, _dotted(path),
                                        f"the file expands to more than {MAX_VALUES:,} values "
                                        "(YAML aliases repeated without end?)")])
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(
                key_node, yaml.ScalarNode
            ) else _scalar(key_node)
            child = (*path, key if isinstance(key, int | str) else str(key))
            if key in out:
                raise ConfigError(
                    [ConfigIssue("", key_node.start_mark.line + 1, _dotted(child), "duplicate key")]
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, child, lines, seen)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines, seen) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML keeping the line of every key; a syntax error becomes a ConfigIssue."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise ConfigError([ConfigIssue(name, bad_line, "", f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                       f"{column}): save the file as UTF-8")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        context = ""
        if exc.context and exc.context_mark:
            context = f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise ConfigError([ConfigIssue(name, line, "", f"YAML syntax: {exc.problem}{context}")]) from exc
    lines: dict[Loc, int] = {}
    if node is None:
        return {}, lines
    try:
        data = _construct(node, (), lines, [0])
    except ConfigError as exc:
        raise ConfigError([ConfigIssue(name, i.line, i.key, i.message) for i in exc.issues]) from exc
    except RecursionError:
        raise ConfigError([ConfigIssue(name, None, "", "nested too deeply (or an alias that contains "
                                       "itself)")]) from None
    return data, lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest key of `loc` that exists in the file (a missing key: its parent)."""
    probe = tuple(loc)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get(())


def issues_from(exc: ValidationError, file: str, lines: dict[Loc, int], prefix: Loc = ()) -> list[ConfigIssue]:
    out = []
    for err in exc.errors():
        loc = (*prefix, *(p for p in err["loc"] if not _is_union_tag(p)))
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not valid in this section; check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        out.append(ConfigIssue(file, line_of(lines, loc), _dotted(loc), msg))
    return out


def _is_union_tag(part: Any) -> bool:
    # pydantic puts function-validator names like "function-after[...]" into locs; hide them.
    return isinstance(part, str) and ("[" in part and part.endswith("]"))


def validate(model: type[BaseModel], data: Any, file: str, lines: dict[Loc, int], prefix: Loc = ()) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from(exc, file, lines, prefix)) from exc
