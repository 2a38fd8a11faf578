"""Topic patterns with named wildcards: `tele/{device_id}/SENSOR`, `shellies/{device_id*}/online`.

`{name}` matches one topic level, `{name*}` one or more (device ids and prefixes may
contain `/`). The MQTT filter a pattern subscribes with is the pattern up to its first
multi-level wildcard, then `#` (MQTT allows `#` only at the end); `+` for each single one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.errors import ConfigError

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}$")


@dataclass(frozen=True, slots=True)
class _Level:
    literal: str | None
    name: str | None = None
    multi: bool = False


class TopicPattern:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._levels = [_parse_level(level, pattern) for level in pattern.split("/")]
        multi = [level for level in self._levels if level.multi]
        if len(multi) > 1:
            raise ConfigError(f"topic pattern {pattern!r} has more than one {{name*}} wildcard")
        if self._levels[0].multi:
            raise ConfigError(
                f"topic pattern {pattern!r} would subscribe to every topic ('#'): "
                "begin it with a literal level"
            )
        names = [level.name for level in self._levels if level.name]
        if len(names) != len(set(names)):
            raise ConfigError(f"topic pattern {pattern!r} names a wildcard twice")
        self.names = frozenset(names)
        # One compiled expression: the router tries patterns for every message.
        self._regex = re.compile("/".join(_regex(level) for level in self._levels))

    @property
    def subscription(self) -> str:
        """The MQTT filter that receives every topic this pattern matches."""
        parts = []
        for level in self._levels:
            if level.multi:
                parts.append("#")
                break
            parts.append("+" if level.name else str(level.literal))
        return "/".join(parts)

    def match(self, topic: str) -> dict[str, str] | None:
        """The named levels of `topic`, or None when it does not match."""
        found = self._regex.fullmatch(topic)
        return None if found is None else found.groupdict()

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"


def _parse_level(level: str, pattern: str) -> _Level:
    found = _PLACEHOLDER.match(level)
    if found:
        return _Level(None, found[1], bool(found[2]))
    if "{" in level or "}" in level or level in {"+", "#"}:
        raise ConfigError(
            f"topic pattern {pattern!r}: {level!r} is neither a literal level nor {{name}}"
        )
    return _Level(level)


def _regex(level: _Level) -> str:
    if level.name is None:
        return re.escape(str(level.literal))
    # Levels are never empty; a multi-level name takes one or more of them.
    body = "[^/]+(?:/[^/]+)*" if level.multi else "[^/]+"
    return f"(?P<{level.name}>{body})"


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT subscription filter (with + and #) takes `topic`."""
    levels = topic.split("/")
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(parts) == len(levels)
