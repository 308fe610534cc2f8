"""The mirror's decoder of raw CRM fields (`store.mirror.json_values`) gives exactly what
`json.loads` (the drivers' and SQLAlchemy's decoder) gives, the texts msgspec refuses included."""

from __future__ import annotations

import json
import math

from leadsla.store.mirror import json_values

TEXTS = [
    '{"Status": "SAL", "OwnerId": "005000000000001AAA", "Amount": 85500.0, "IsWon": false}',
    '{"Big": 123456789012345678901234567890, "Neg": -9223372036854775809, "Tiny": 5e-324}',
    '{"a": 1, "a": 2}',
    '{"Name": "Ren\\u00e9e\\n", "Empty": null, "List": [1, "x", {"y": []}]}',
    "null",
    '{"Score": NaN, "Cap": Infinity}',  # not JSON, but json.loads (and SQLite's text) take them
    '{"Huge": 1e400}',
    '{"Odd": "\\ud800"}',  # a lone surrogate
]


def test_the_values_are_json_loads_own() -> None:
    got = json_values([*TEXTS, None])
    assert got[-1] is None
    for text, value in zip(TEXTS, got, strict=False):
        expected = json.loads(text)
        assert repr(value) == repr(expected), text  # types too: 1.0 is not 1, NaN by its repr
    assert math.isnan(got[5]["Score"]) and got[6]["Huge"] == math.inf and got[7]["Odd"] == "\ud800"
