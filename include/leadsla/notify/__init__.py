"""Delivery of SLA alerts: the outbox, message builders, and the Slack and email senders.

The monitor enqueues actions (`notify.outbox.enqueue`); `notify.delivery.deliver_due` claims
due rows, sends them through the Airflow Slack and SMTP hooks and marks them, so a retried,
cleared or overlapping task sends nothing twice. Nothing here imports Airflow at module level.
"""

from __future__ import annotations
