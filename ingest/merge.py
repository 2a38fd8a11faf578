"""One reading from a device's values that arrive one per message.

Families that publish one number per topic (power, voltage, current and the energy counter
as four messages a few milliseconds apart) would otherwise become four sparse rows per
cycle. A generic decoder with `merge_window_ms` asks the batcher to merge a device's
readings (of one data type) that arrive within that window of the first into one, as
long as no value would be lost: two readings that both carry the same measure stay two.
Merging happens within a batch, whose messages are acknowledged together after its
commit; a batch is held open until its merge windows have passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from storage import Reading

if TYPE_CHECKING:
    from ingest.decode.patterns import TopicPattern

# What a reading may carry, each at most once in a merged one.
_MEASURES = (
    "energy_kwh", "power_kw", "voltage", "current", "battery_pct", "irradiance_wm2",
    "panel_temp_c", "counter_kwh", "state_of_charge",
)  # fmt: skip


class MergeWindows:
    """Which topics' readings merge, and within how many seconds."""

    def __init__(self, windows: Sequence[tuple[TopicPattern, float]]) -> None:
        self._patterns = list(windows)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def of(self, topic: str) -> float | None:
        """The merge window of a reading from `topic`, in seconds; None if it does not merge."""
        for pattern, seconds in self._patterns:
            if pattern.match(topic) is not None:
                return seconds
        return None


def merged(first: Reading, later: Reading) -> Reading | None:
    """`first` with what `later` adds, or None when both carry one measure (or the later
    one has a counter of another name): then they stay two readings."""
    changes: dict[str, object] = {}
    for name in _MEASURES:
        value = getattr(later, name)
        if value is None:
            continue
        if getattr(first, name) is not None:
            return None
        changes[name] = value
    if later.counter is not None:
        changes["counter"] = later.counter
    if later.quality != "good" and first.quality == "good":
        changes["quality"] = later.quality
    if later.metadata:
        changes["metadata"] = {**(first.metadata or {}), **later.metadata}
    return msgspec.structs.replace(first, **changes)
