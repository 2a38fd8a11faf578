"""Choosing the decoder for a topic, and making sure no message can crash the daemon."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from ingest.decode.base import Decoded, Decoder
from ingest.decode.enabled import build_decoders
from ingest.decode.patterns import TopicPattern, filter_matches
from ingest.decode.topics import device_id_problem
from ingest.errors import FieldError
from ingest.merge import MergeWindows
from ingest.settings import DecodersSettings, IngestSettings
from storage import DeadLetter, RejectKind

log = structlog.get_logger("meterflow.decoders")


class Router:
    """Hands each message to the first decoder route whose pattern matches its topic."""

    def __init__(
        self, decoders: Sequence[Decoder], limits: IngestSettings, quiet: Sequence[str] = ()
    ) -> None:
        self._routes = [(decoder.name, route) for decoder in decoders for route in decoder.routes]
        self._limits = limits
        # Subscription filters under which a topic no pattern maps is ignored, not rejected.
        self._quiet = tuple(quiet)
        # The readings the batcher merges (ingest/merge.py); none unless configured.
        self.merges = MergeWindows([])

    @classmethod
    def configured(
        cls, decoders: DecodersSettings, limits: IngestSettings, topic_prefix: str
    ) -> Router:
        """The router of the decoders `decoders` switches on, as the daemon builds it."""
        quiet = [
            TopicPattern(topic).subscription
            for generic in decoders.generic
            if generic.name in decoders.enabled and generic.unmatched == "ignore"
            for topic in generic.topics
        ]
        router = cls(build_decoders(decoders, limits, topic_prefix), limits, quiet)
        router.merges = MergeWindows(
            [
                (TopicPattern(topic), generic.merge_window_ms / 1000)
                for generic in decoders.generic
                if generic.name in decoders.enabled and generic.merge_window_ms
                for topic in generic.topics
            ]
        )
        return router

    def subscriptions(self, shared_group: str | None) -> list[str]:
        """The MQTT filters to subscribe to; shareable ones under $share/<group>/ if given."""
        filters: dict[str, None] = {}
        for _, route in self._routes:
            topic_filter = route.pattern.subscription
            if shared_group and route.shareable:
                topic_filter = f"$share/{shared_group}/{topic_filter}"
            filters[topic_filter] = None
        return list(filters)

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Sequence[Decoded]:
        """What one message says: readings, an availability change, a dead letter, or
        nothing worth storing. Never raises: the daemon calls this for every message."""
        limits = self._limits
        if len(payload) > limits.max_payload_bytes:
            reason = (
                f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}"
            )
            return (self._reject(topic, payload, received_at, reason, "too_large"),)
        for name, route in self._routes:
            captures = route.pattern.match(topic)
            if captures is None:
                continue
            device_id = captures.get("device_id")
            problem = None if device_id is None else device_id_problem(device_id)
            if problem is not None:
                return (self._reject(topic, payload, received_at, problem, "topic"),)
            try:
                return route.handle(topic, captures, payload, received_at)
            except FieldError as exc:
                return (self._reject(topic, payload, received_at, str(exc), "payload"),)
            except Exception as exc:  # noqa: BLE001  (a decoder bug must not stop ingestion)
                log.warning("decoder failed", decoder=name, topic=topic, error=repr(exc))
                reason = f"the {name} decoder failed on this message: {exc!r}"
                return (self._reject(topic, payload, received_at, reason, "payload"),)
        return self._unmatched(topic, payload, received_at)

    def _unmatched(self, topic: str, payload: bytes, received_at: datetime) -> Sequence[Decoded]:
        """Nothing under a family's broad subscription that ignores what it does not map;
        else a dead letter."""
        if any(filter_matches(quiet, topic) for quiet in self._quiet):
            return ()
        reason = "the topic matches no configured decoder's pattern"
        return (self._reject(topic, payload, received_at, reason, "topic"),)

    def _reject(
        self, topic: str, payload: bytes, received_at: datetime, reason: str, kind: RejectKind
    ) -> DeadLetter:
        return DeadLetter(
            topic,
            payload[: self._limits.dead_letter_max_bytes],
            reason,
            received_at=received_at,
            kind=kind,
            payload_size=len(payload),
        )
