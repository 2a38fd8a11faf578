"""Pseudonyms for exports analysts may hold: a device's or a user's id replaced by a keyed
hash (HMAC-SHA256), the same for the same id and key in every export, and useless for
finding the id without the key, which lives in the settings (best the environment) and is
never written with the data.

Devices and users are hashed apart ('device:' and 'user:' before the id), so a device
and a user that share an id do not share a pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import SecretStr

Kind = Literal["device", "user"]
# 128 bits of the hash: no two ids of any fleet share one.
_LENGTH = 32


class Pseudonyms:
    """The pseudonyms of one key."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key.get_secret_value().encode()

    def __call__(self, kind: Kind, value: str | None) -> str | None:
        if value is None:
            return None
        digest = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256)
        return digest.hexdigest()[:_LENGTH]
