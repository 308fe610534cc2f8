"""The configuration an entry point runs on: the files when they agree, else the last good ones.

Every entry point that reads configuration calls `in_force` first. The files (lifecycle, policy,
mapping, quality, reports) are checked together (`leadsla.configuration.check_files`):

- they agree: they are what runs, and the store remembers them as the last good configuration
  (`config_snapshots`, once per version);
- they disagree and the store has never accepted a configuration (a new deployment): the task
  fails with one ConfigurationError listing every problem;
- they disagree and a configuration was accepted before: the task runs on that snapshot, whole
  (nothing of the edit half-applies), and the data-engineering channel (quality.yaml
  `incident.slack_channel`, the kept one's) is told once per refused version, naming every problem.

A process checks one version of the files once (the result is kept by its digest) and loads a
snapshot once, so the monitor's run every minute costs a read of five small files and one
indexed query.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from leadsla.configuration import (
    ConfigCheck,
    ConfigFiles,
    Configuration,
    ConfigurationError,
    Snapshot,
    check_files,
    latest_snapshot,
    load_snapshot,
    problems_message,
    read_files,
    refused_notice,
    remember,
)
from leadsla.notify.outbox import queue_notices
from leadsla.store.audit import AuditContext

log = logging.getLogger(__name__)

#: Versions of the files (and snapshots) a process keeps checked; a deployment has one or two.
_KEEP = 8
_checked: OrderedDict[tuple, ConfigCheck] = OrderedDict()
_loaded: OrderedDict[str, Configuration] = OrderedDict()


@dataclass(frozen=True)
class InForce:
    """What an entry point runs on, and why."""

    configuration: Configuration
    #: The files' problems when they were refused (empty when the files are what runs).
    problems: list[str] = field(default_factory=list)
    #: The snapshot running instead of the files, when they were refused.
    kept: Snapshot | None = None

    @property
    def refused(self) -> bool:
        return self.kept is not None


def _remember_in(cache: OrderedDict, key, value):
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _KEEP:
        cache.popitem(last=False)
    return value


def _checked_files(paths: dict[str, str | Path | None]) -> tuple[ConfigFiles, ConfigCheck]:
    """The files' texts and `check_files` of them, checked once per process and version."""
    files = read_files(**paths)
    for _ in range(3):
        key = (tuple(sorted(files.paths.items())), files.digest)
        if key in _checked:
            return files, _checked[key]
        check = check_files(**files.paths)
        again = read_files(**paths)
        if again.digest == files.digest:  # not edited while being checked
            return files, _remember_in(_checked, key, check)
        files = again
    raise ConfigurationError("the configuration files kept changing while being checked: try again")


def _snapshot_configuration(snapshot: Snapshot) -> Configuration:
    if snapshot.digest not in _loaded:
        _remember_in(_loaded, snapshot.digest, load_snapshot(snapshot))
    return _loaded[snapshot.digest]


def in_force(
    engine: sa.Engine,
    context: AuditContext,
    *,
    now: dt.datetime | None = None,
    paths: dict[str, str | Path | None] | None = None,
) -> InForce:
    """The configuration this task run uses (see the module docstring).

    Args:
        now: the run's time, when the refused notice is queued (default: the wall clock).
        paths: files other than the active ones, by role (policy, lifecycle, mapping, quality,
            reports).

    Raises:
        ConfigurationError: the files disagree and no configuration was ever accepted (one
            message, one line per problem).
    """
    files, check = _checked_files(paths or {})
    accepted_at = dt.datetime.now(dt.UTC)  # bookkeeping: when this process accepted it
    if check.ok:
        assert check.configuration is not None
        with engine.begin() as conn:
            if remember(conn, files, at=accepted_at, context=context):
                log.info("configuration %s accepted and remembered as the last good one", files.digest[:12])
        return InForce(check.configuration)
    with engine.begin() as conn:
        kept = latest_snapshot(conn)
        if kept is None:
            raise ConfigurationError(
                problems_message(check.problems)
                + "\nno configuration was ever accepted in this store: nothing runs until the files agree"
            )
        configuration = _snapshot_configuration(kept)
        notice = refused_notice(files, check.problems, kept, configuration.quality.incident_channel)
        queued = queue_notices(conn, [notice], now or accepted_at, context)
    log.warning(
        "configuration %s refused, running on the last good one (%s, accepted %s): %s%s",
        files.digest[:12],
        kept.digest[:12],
        kept.accepted_at.isoformat(timespec="minutes"),
        problems_message(check.problems),
        "" if not queued else "\n(data engineering told)",
    )
    return InForce(configuration, list(check.problems), kept)
