"""Errors raised by the ingest package.

IngestError
├── ConfigError        settings that cannot be used, with what is wrong
├── BrokerError        the MQTT connection failed or was lost (`url` names the broker)
│   ├── ConnectRefusedError    CONNECT refused (`reason_code`, as MQTT 5 numbers them)
│   ├── SessionTakenOverError  another client connected with our client id
│   └── ProtocolError  the broker sent what is not valid MQTT 5 for a QoS 1 subscriber
└── DecodeError        a message that cannot become a reading; never leaves `ingest.decode`,
    ├── FieldError     which turns it into a dead letter: a device document's field (`field`)
    └── PayloadError   a canonical payload that breaks the schema (`error`, pydantic's account)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class IngestError(Exception):
    """Base class of every error the ingest package raises."""


class ConfigError(IngestError):
    """Settings that cannot be used; the message says which and why."""


class BrokerError(IngestError):
    """The connection to the MQTT broker failed or was lost."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url


class ConnectRefusedError(BrokerError):
    """The broker answered CONNECT with a refusal (`reason_code`, as in MQTT 5)."""

    def __init__(self, message: str, reason_code: int, *, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.reason_code = reason_code


class SessionTakenOverError(BrokerError):
    """Another client connected with our client id, and the broker gave it our session."""


class ProtocolError(BrokerError):
    """The broker sent something that is not valid MQTT 5 for a QoS 1 subscriber."""


class DecodeError(IngestError, ValueError):
    """A message that cannot become a reading; the router makes it a dead letter."""


class FieldError(DecodeError):
    """A field of a device's document that is missing or not what its decoder expects."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PayloadError(DecodeError):
    """The payload breaks the schema; `error` is pydantic's account of how."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(str(error))
        self.error = error
