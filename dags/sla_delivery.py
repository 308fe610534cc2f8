"""
### sla_delivery: send every queued message at its instant, continuously

One run after another (`@continuous`, one at a time): each run's `deliver` keeps delivering for
about ten minutes (`LEADSLA_DELIVERY_LOOP_S`, ended at second 30 of a minute), sleeping to the
next row's due time and looking for new rows every second. A warning `sla_monitor` planned ahead
goes at its checkpoint's second, after a re-check against the store's latest CRM state: a lead
touched (or moved on) before the instant cancels it (audit `cancelled_by_touch`), a clock paused,
reassigned or re-tiered withdraws it for the monitor to decide again (`cancelled_by_change`).
A breach planned ahead goes whole at its second: its messages, and its CRM action (reassignment,
lock) performed by the loop after the same re-check; a touch before the deadline ends all of it.
Leases, retries and catch-up are `sla_monitor`'s deliver's (`leadsla.notify.delivery`), which
keeps running every minute too: it covers the seconds between two runs of this DAG, and leases
keep every message to one send whichever deliverer takes it.

Connections: `leadsla_store`, `slack_api_default`, `smtp_default` (and the policy's SMS one).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from leadsla.tasks.failure_alerts import on_failure

OWNER = "data-engineering"


@dag(
    schedule="@continuous",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=75),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(seconds=5)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["sla", "alerts"],
    doc_md=__doc__,
)
def sla_delivery():
    # The loop's budget ends the try (at most an hour, then a minute to its second 30); the timeout
    # only catches a hung one, and the retry takes the rows up again.
    @task(execution_timeout=dt.timedelta(minutes=65))
    def deliver(**context) -> dict:
        """Every due message, each at its instant, for the loop's budget; leases run on the wall clock."""
        from leadsla.tasks import monitor

        return monitor.deliver(context, loop=True)

    deliver()


sla_delivery()
