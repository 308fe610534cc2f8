"""Run the go-live scenarios against a policy: one `ScenarioResult` (pass, fail or n/a) each.

A scenario whose policy lacks what it needs is "n/a" with the reason, never a silent pass; one
that raises (a policy the engine cannot evaluate, say) fails with the error, so the table is
always complete.

Pure: no Airflow, no store, no network, no wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from leadsla.policy import Policy
from leadsla.scenarios import checklist, lifecycle_paths
from leadsla.scenarios.case import Checks, Run, Scenario, ScenarioResult
from leadsla.scenarios.terms import NotApplicable

#: Every scenario, in the order the QA table lists them: the lifecycle paths, then the checklist.
SCENARIOS: tuple[Scenario, ...] = (*lifecycle_paths.SCENARIOS, *checklist.SCENARIOS)


def run_scenario(scenario: Scenario, policy: Policy) -> ScenarioResult:
    """One scenario against `policy`."""

    def result(status: str, detail: str) -> ScenarioResult:
        return ScenarioResult(scenario.name, scenario.title, status, detail)

    check = Checks()
    try:
        case = scenario.build(policy)
        case.expect(Run(policy, case), check)
    except NotApplicable as exc:
        return result("n/a", str(exc))
    except Exception as exc:  # noqa: BLE001 (a scenario that cannot run has failed, with why)
        return result("fail", f"error: {type(exc).__name__}: {exc}")
    if check.failures:
        return result("fail", "; ".join(check.failures))
    return result("pass", "; ".join(check.notes))


def run_scenarios(policy: Policy, names: Iterable[str] | None = None) -> list[ScenarioResult]:
    """Every scenario (or those named) against `policy`, in `SCENARIOS` order.

    Raises:
        KeyError: a name that is no scenario's.
    """
    wanted = None if names is None else list(names)
    if wanted is not None:
        unknown = sorted(set(wanted) - {s.name for s in SCENARIOS})
        if unknown:
            raise KeyError(f"no such scenario: {', '.join(unknown)}")
    return [run_scenario(s, policy) for s in SCENARIOS if wanted is None or s.name in wanted]


def scenario_named(name: str) -> Scenario:
    for found in SCENARIOS:
        if found.name == name:
            return found
    raise KeyError(f"no such scenario: {name}")
