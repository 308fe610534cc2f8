"""Frame cells as Python values: what the decisions read out of the engine's pandas frames.

A missing cell (None, NaN, NA, NaT) reads as None; instants as aware `datetime`s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd


def cell_instant(value: Any) -> dt.datetime:
    """A timestamp cell as an aware `datetime`."""
    return pd.Timestamp(value).to_pydatetime()


def cell_text(value: Any) -> str | None:
    """A cell as text, or None when it is missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    return str(value)
