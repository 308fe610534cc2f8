"""A breach a policy tells to a Slack channel (`channel:<name>`) reaches that channel.

The scenarios found it resolved to nobody (`leadsla policy check` accepted the role, the
decisions dropped it); `decisions.recipients.Directory.resolve` now resolves it.
"""

from __future__ import annotations

from tests.scenarios.policies import edited_policy, result, sales_touch


def _breach_tells_a_channel(data: dict) -> None:
    sales_touch(data)["breach"]["notify"].append("channel:#sla-alerts")


def test_a_breach_told_to_a_channel_reaches_it() -> None:
    outcome = result(edited_policy("tiered", _breach_tells_a_channel), "breach_checkpoints")
    assert outcome.status == "pass", outcome.detail
