"""The README and docs name only what exists: files, folders and benchmark modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
TOP_LEVEL = "meterflow|ingest|storage|partitions|tests|bench|config|docs|scripts"
# A repository path: a top-level folder, then levels, ending in a file name with an
# extension or in a `/` (a folder). Topics such as `meterflow/smart_meter/m-1/telemetry`
# have neither, and certificate names (`.crt`, `.key`) are the user's files, not ours.
PATH = re.compile(
    rf"(?<![\w./-])(?:{TOP_LEVEL})/(?:[\w.-]+/)*(?:[\w-]+\.(?:py|md|toml|conf|json|yml|sh)\b|(?=[\s`)]))"
)
MODULE = re.compile(r"python -m ((?:bench|meterflow)(?:\.\w+)*)")


def mentioned(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    return [
        (document.name, found.group(0) if pattern is PATH else found.group(1))
        for document in DOCUMENTS
        for found in pattern.finditer(document.read_text())
    ]


@pytest.mark.parametrize(("document", "path"), sorted(set(mentioned(PATH))))
def test_every_path_the_docs_name_exists(document: str, path: str) -> None:
    """A path in README.md or docs/ names a file or folder of this repository."""
    assert (ROOT / path.rstrip("/")).exists(), f"{document} names {path}, which does not exist"


@pytest.mark.parametrize(("document", "module"), sorted(set(mentioned(MODULE))))
def test_every_module_the_docs_run_exists(document: str, module: str) -> None:
    """`python -m X` in README.md or docs/ names a module of this repository."""
    base = ROOT / module.replace(".", "/")
    assert base.with_suffix(".py").exists() or (base / "__main__.py").exists(), (
        f"{document} runs {module}, which does not exist"
    )


def test_the_docs_name_the_stage_modules() -> None:
    """The map names a module for each stage, so the checks above cover them."""
    paths = {path for _, path in mentioned(PATH)}
    for stage in ("ingest/source/", "ingest/decode/router.py", "ingest/batch.py",
                  "storage/writer.py", "ingest/acknowledge.py"):  # fmt: skip
        assert stage in paths
