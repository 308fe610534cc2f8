"""The committed GX suites (great_expectations/gx/expectations/*.json), loaded once per process.

The suites are the source of truth for what is checked: each expectation carries GX's own
`severity` (critical = error: the row is quarantined; warning = loaded and flagged) and a
`meta.reason` that becomes the row-level reason. Suite parameters (`statuses`,
`rejection_reasons`, `latest_epoch`) come from quality.yaml, the CRM mapping and the run's time.
This module imports Great Expectations inside its functions only, and never writes the project.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SUITES = ("leads", "history", "activities", "users")


@lru_cache(maxsize=1)
def file_context() -> Any:
    """The GX 1.x file context of great_expectations/ (its files under gx/); progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from leadsla.paths import great_expectations_dir

    context = gx.get_context(mode="file", project_root_dir=str(great_expectations_dir()))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@lru_cache(maxsize=1)
def validation_context() -> Any:
    """An ephemeral (in-memory) context for validations: nothing about a run is written to disk."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@lru_cache(maxsize=len(SUITES))
def suite(name: str) -> Any:
    """The named suite as committed.

    Raises:
        LeadSlaError: no such suite file.
    """
    from leadsla.errors import LeadSlaError

    if name not in SUITES:
        raise LeadSlaError(f"unknown data-quality suite {name!r}: expected one of {', '.join(SUITES)}")
    try:
        return file_context().suites.get(name)
    except Exception as exc:  # GX raises its own DataContextError subclasses
        raise LeadSlaError(
            f"the GX suite {name!r} cannot be read from great_expectations/gx/expectations: {exc}"
        ) from None


def build_data_docs() -> str:
    """Build Data Docs from the file context (optional; never on the sync's hot path).

    Returns:
        The local site's index path.
    """
    context = file_context()
    sites = context.build_data_docs()
    return next(iter(sites.values()), "")
