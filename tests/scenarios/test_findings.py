"""What the scenarios found that is not fixed yet, each a strict xfail: it turns into a failure
the day the code is fixed, so the marker is removed with the fix."""

from __future__ import annotations

import pytest

from tests.scenarios.policies import edited_policy, result, sales_touch


def _breach_tells_a_channel(data: dict) -> None:
    sales_touch(data)["breach"]["notify"].append("channel:#sla-alerts")


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="`leadsla policy check` accepts a channel:<name> role, but decisions.recipients.Directory.resolve "
    "resolves it to nobody: the breach never reaches the channel (reported on branch scenarios)",
)
def test_a_breach_told_to_a_channel_reaches_it() -> None:
    outcome = result(edited_policy("tiered", _breach_tells_a_channel), "breach_checkpoints")
    assert outcome.status == "pass", outcome.detail
