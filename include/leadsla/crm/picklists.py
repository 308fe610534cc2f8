"""The org's picklists against the lifecycle: drift between what Salesforce offers and what we declare.

`picklist_drift` compares each lifecycle field's picklist (Lead.Status, Opportunity.StageName) and
the rejection-reason picklist with include/config/lifecycle.yaml, through crm_fields.yaml's
status_map: an org value that maps to no lifecycle status, a lifecycle status the org cannot
produce, and a reason on one side only are each one problem naming both places. Pure: the
picklists are passed in (`CrmClient.describe_picklists`); it never calls the CRM itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping

from leadsla.crm.mapping import CrmMapping
from leadsla.lifecycle import Lifecycle

#: object name -> {field name -> its active picklist values}
Picklists = Mapping[str, list[str]]


def lifecycle_digest(lifecycle: Lifecycle) -> str:
    """SHA-256 of what the lifecycle declares (not where it was read from): a picklist comparison
    stands while neither the mapping nor this changes."""
    declared = {name: dataclasses.asdict(lc) for name, lc in sorted(lifecycle.objects.items())}
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode("utf-8")).hexdigest()


def picklist_drift(
    lifecycle: Lifecycle, mapping: CrmMapping, describe_picklists: Callable[[str], Picklists]
) -> list[str]:
    """Every disagreement between the org's picklists and the lifecycle (empty when they agree)."""
    problems: list[str] = []
    where_lc, where_map = lifecycle.source, mapping.path
    for name, lc in lifecycle.objects.items():
        if name not in mapping.objects:
            continue  # an object the sync does not read has no picklist to drift
        picklists = describe_picklists(name)
        org_values = picklists.get(lc.field)
        if org_values is None:
            problems.append(
                f"the org's {name}.{lc.field} is not a picklist, but {where_lc} declares its statuses"
            )
            continue
        status_map = mapping.status_map.get(name) or {}
        reached: set[str] = set()
        for value in org_values:
            meant = status_map.get(value, value)
            if meant in lc.names:
                reached.add(meant)
            else:
                problems.append(
                    f"the org's {name}.{lc.field} value {value!r} is neither a status in {where_lc} nor "
                    f"mapped to one in {where_map} status_map.{name}"
                )
        for status in lc.names:
            if status not in reached:
                problems.append(
                    f"{where_lc}: {name} status {status!r} is not a value of the org's {name}.{lc.field} "
                    f"(nor mapped from one in {where_map} status_map.{name})"
                )
        if lc.reason_field and lc.rejection_reasons:
            org_reasons = picklists.get(lc.reason_field)
            if org_reasons is None:
                problems.append(
                    f"the org's {name}.{lc.reason_field} is not a picklist of {where_lc}'s reasons"
                )
                continue
            org_only, ours_only = _one_side_only(org_reasons, lc.rejection_reasons)
            problems += [
                f"the org's {name}.{lc.reason_field} value {r!r} is not a signed-off reason in {where_lc}"
                for r in org_only
            ]
            problems += [
                f"{where_lc}: rejection reason {r!r} is not a value of the org's {name}.{lc.reason_field}"
                for r in ours_only
            ]
    return problems


def _one_side_only(org: list[str], ours: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(the org's values we do not declare, our values the org lacks), each in its own order."""
    return [v for v in org if v not in ours], [v for v in ours if v not in org]
