"""Errors raised by the ingest package.

IngestError
├── ConfigError        settings that cannot be used, with what is wrong
└── BrokerError        the MQTT connection failed or was lost
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error the ingest package raises."""


class ConfigError(IngestError):
    """Settings that cannot be used; the message says which and why."""


class BrokerError(IngestError):
    """The connection to the MQTT broker failed or was lost."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url


class ProtocolError(BrokerError):
    """The broker sent something that is not valid MQTT 5 for a QoS 1 subscriber."""
