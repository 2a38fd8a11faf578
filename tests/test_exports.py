"""Each package's public names are listed, sorted, in its __all__."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize(
    "name", ["meterflow", "ingest", "ingest.decode", "ingest.source", "storage", "partitions"]
)
def test_all_is_sorted_and_every_name_exists(name: str) -> None:
    """`__all__` is sorted and names only what the package really exports."""
    package: ModuleType = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported, key=isort_style)
    for member in exported:
        assert hasattr(package, member), member
