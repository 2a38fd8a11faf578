"""The partitions package's settings: how long months stay in the live database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from partitions.retention import MIN_KEEP_MONTHS, RetentionAction


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Months to keep in the live database, counting the current one; unset keeps them all.
    # The current and the previous month are never touched, so the least is 2.
    keep_months: Annotated[int, Field(ge=MIN_KEEP_MONTHS)] | None = None
    action: RetentionAction = "archive"
    archive_dir: Path = Path("data/archive")
    interval_s: Annotated[float, Field(gt=0)] = 24 * 3600.0
