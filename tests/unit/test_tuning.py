"""Tuning from the environment: unset is the default, a value out of range is one clear error."""

from __future__ import annotations

import datetime as dt

import pytest

from leadsla.errors import LeadSlaError
from leadsla.tuning import count_from_env, seconds_from_env

DEFAULT = dt.timedelta(seconds=45)


def test_seconds_unset_or_blank_is_the_default(monkeypatch) -> None:
    monkeypatch.delenv("LEADSLA_X_S", raising=False)
    assert seconds_from_env("LEADSLA_X_S", DEFAULT, low=0, high=55) == DEFAULT
    monkeypatch.setenv("LEADSLA_X_S", "  ")
    assert seconds_from_env("LEADSLA_X_S", DEFAULT, low=0, high=55) == DEFAULT


@pytest.mark.parametrize("raw, seconds", [("0", 0), ("12.5", 12.5), (" 55 ", 55)])
def test_seconds_in_range(monkeypatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv("LEADSLA_X_S", raw)
    assert seconds_from_env("LEADSLA_X_S", DEFAULT, low=0, high=55) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["-1", "56", "soon", "nan", "inf", "1e9"])
def test_seconds_out_of_range_name_the_variable_value_and_range(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("LEADSLA_X_S", raw)
    with pytest.raises(LeadSlaError) as err:
        seconds_from_env("LEADSLA_X_S", DEFAULT, low=0, high=55, why=" (below the minute)")
    assert str(err.value) == f"LEADSLA_X_S={raw!r}: expected seconds from 0 to 55 (below the minute)"


def test_counts(monkeypatch) -> None:
    monkeypatch.delenv("LEADSLA_N", raising=False)
    assert count_from_env("LEADSLA_N", 7, of="runs") == 7
    monkeypatch.setenv("LEADSLA_N", "12")
    assert count_from_env("LEADSLA_N", 7, of="runs") == 12
    for bad in ("0", "-3", "2.5", "many"):
        monkeypatch.setenv("LEADSLA_N", bad)
        with pytest.raises(
            LeadSlaError, match=rf"^LEADSLA_N='{bad}': expected a whole number of runs, at least 1$"
        ):
            count_from_env("LEADSLA_N", 7, of="runs")
