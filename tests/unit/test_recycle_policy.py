"""The policy's `recycle:` section: what it says by default, and what the policy refuses (naming the
key, the value and what was expected), checked against the lifecycle."""

from __future__ import annotations

import copy

import pytest
import yaml

from leadsla.lifecycle import LifecycleError, lifecycle_from_dict, load_lifecycle
from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, policy_from_dict, recycle_touch

RAW = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def _with(**recycle) -> dict:
    data = copy.deepcopy(RAW)
    data["recycle"].update(recycle)
    return data


def test_the_shipped_policies_recycle_after_three_attempts_over_five_business_days() -> None:
    for path in (DEFAULT_POLICY_PATH, DEFAULT_POLICY_PATH.with_name("sla_policy.flat.yaml")):
        policy = load_policy(path)
        rule = policy.recycle
        assert (rule.mode, rule.attempts, rule.business_days) == ("recommend", 3, 5), path
        assert (rule.status, rule.reason, rule.nurture.reenter) == ("Recycled", "No Response", "MQL")
        touch = recycle_touch(policy)
        assert touch.by == "owner" and touch.types == ["Call", "Email", "Meeting"]
        assert {"ListEmail", "Cadence"} <= set(touch.exclude_subtypes) and touch.exclude_automation


def test_the_reason_is_a_signed_off_one_and_the_lifecycle_may_sign_off_eight() -> None:
    lead = load_lifecycle().lead()
    assert "No Response" in lead.rejection_reasons and len(lead.rejection_reasons) == 8
    raw = {
        "objects": {
            "Lead": {
                "field": "Status",
                "reason_field": "Rejection_Reason__c",
                "statuses": [{"name": "SAL", "stage": "open"}, {"name": "Out", "stage": "closed"}],
                "rejection_reasons": [f"R{i}" for i in range(9)],
            }
        }
    }
    raw["objects"]["Lead"]["statuses"][1]["reason_required"] = True
    with pytest.raises(LifecycleError, match="expected 5 to 8 signed-off reasons"):
        lifecycle_from_dict(raw)
    raw["objects"]["Lead"]["rejection_reasons"].pop()
    assert len(lifecycle_from_dict(raw).lead().rejection_reasons) == 8


@pytest.mark.parametrize(
    ("recycle", "message"),
    [
        ({"sla": "nope"}, r"recycle.sla: 'nope': expected one of the SLAs \(sales_touch, "),
        ({"sla": "demo_to_proposal"}, r"recycle.sla: 'demo_to_proposal': expected a Lead SLA started by a"),
        ({"sla": "mql_acceptance"}, r"recycle.sla: 'mql_acceptance': the SLA has no touch stop rule"),
        ({"status": "Recycle"}, r"recycle.status: 'Recycle': not a Lead Status in .*lifecycle.yaml"),
        (
            {"status": "SQL", "mode": "auto"},
            r"recycle.status: 'SQL': a recycled lead leaves the funnel unworked.*\(it is closed, worked\)",
        ),
        ({"status": "Nurture - contact later"}, r"stage: closed that is not worked .*\(it is paused\)"),
        ({"reason": "Ghosted"}, r"recycle.reason: 'Ghosted': not a signed-off rejection reason"),
        ({"nurture": {"reenter": "SQL"}}, r"recycle.nurture.reenter: 'SQL': expected an open Lead Status"),
        ({"nurture": {"after_days": 0}}, r"recycle.nurture.after_days: 0"),
        ({"attempts": 0}, r"recycle.attempts: 0: Input should be greater than or equal to 1"),
        ({"business_days": -1}, r"recycle.business_days: -1"),
        ({"mode": "sometimes"}, r"recycle.mode: 'sometimes'"),
        ({"notify": ["owner", "vp_nobody"]}, r"recycle.notify\[1\]: 'vp_nobody': expected a role"),
        ({"channels": ["sms"]}, r"recycle.channels\[0\]: 'sms': Input should be 'slack' or 'email'"),
        ({"thresold": 3}, r"recycle.thresold: 3: unknown key"),
    ],
)
def test_the_policy_refuses_a_bad_recycle_rule_naming_it(recycle: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_dict(_with(**recycle), "p.yaml")


def test_team_manager_needs_the_slas_team_to_name_one() -> None:
    data = _with(notify=["team_manager"])
    data["teams"]["sdr_east"].pop("manager")
    with pytest.raises(PolicyError, match=r"recycle.notify\[0\]: 'team_manager': SLA 'sales_touch' cannot"):
        policy_from_dict(data, "p.yaml")


def test_without_the_section_nothing_is_counted_or_recycled() -> None:
    data = copy.deepcopy(RAW)
    del data["recycle"]
    policy = policy_from_dict(data, "p.yaml")
    assert policy.recycle is None and recycle_touch(policy) is None
