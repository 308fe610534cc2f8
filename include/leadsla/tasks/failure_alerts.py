"""What every DAG does when a run fails: tell data engineering on Slack and by e-mail.

Each DAG's ``on_failure_callback`` is `on_failure()`: Airflow calls it in the DAG processor when a
run fails, because a task failed for good (its retries spent) or the run passed its
``dagrun_timeout``. It is two notifiers, one per channel, which Airflow runs one after the other,
each on its own: a broken Slack does not keep the e-mail from going, nor the reverse. Each sends
through the providers' own notifier (`SlackNotifier` on ``slack_api_default``, `SmtpNotifier` on
``smtp_default``) to data engineering, quality.yaml ``incident.slack_channel`` and
``incident.email``, read when a run fails.

Imported at DAG-file top level, so its own top level is `airflow.sdk` and constants only: the
provider notifiers and quality.yaml are loaded when a run fails, never on a parse (importing the
two notifier modules at a DAG file's top level took sla_health.py's parse from 0.040 s to 0.167 s,
bench/parse_time.py's measure, best of 5).
"""

from __future__ import annotations

import html
from typing import Any

from airflow.sdk import BaseNotifier

#: The connections the notifiers send through (as `leadsla.notify.slack` / `.email` name them).
SLACK_CONN_ID = "slack_api_default"
SMTP_CONN_ID = "smtp_default"
#: The sender when smtp_default names none (as `leadsla.notify.email.DEFAULT_FROM`).
DEFAULT_FROM = "lead-sla-monitor@localhost"


def failure_lines(context: dict[str, Any]) -> list[str]:
    """What a failed run says: which DAG and run, why, the last task that failed and its log."""
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or "an unknown DAG"
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None) or "an unknown run"
    lines = [f"DAG {dag_id}, run {run_id}, failed: {context.get('reason') or 'reason not given'}."]
    ti = context.get("ti") or context.get("task_instance")
    if ti is not None:
        lines.append(f"Last task: {getattr(ti, 'task_id', '?')}, try {getattr(ti, 'try_number', '?')}.")
        try:
            log_url = ti.log_url
        except Exception:  # the URL needs the webserver's base_url; the rest still says enough
            log_url = None
        if log_url:
            lines.append(f"Log: {log_url}")
    lines.append("Its owner and doc_md say what it does; the task log says why it failed.")
    return lines


def _slack_text(lines: list[str]) -> str:
    """Slack text with Slack's control characters escaped: a run id or reason pings nobody."""
    escaped = (line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for line in lines)
    return "Lead SLA Monitor: a pipeline failed\n" + "\n".join(escaped)


class DataEngineeringAlert(BaseNotifier):
    """Tells data engineering that a DAG run failed, on one channel (``slack`` or ``email``).

    Nothing here is a template: the text is built from the context and handed to the provider's
    notifier's `notify` as it is (a run id holding ``{{`` is shown, never rendered).
    """

    template_fields = ()

    def __init__(self, channel: str) -> None:
        if channel not in ("slack", "email"):
            raise ValueError(f"unknown channel {channel!r}: slack or email")
        super().__init__()
        self.channel = channel

    def notify(self, context: dict[str, Any]) -> None:
        from leadsla.quality.rules import data_engineering

        slack_channel, email = data_engineering()
        lines = failure_lines(context)
        if self.channel == "slack":
            from airflow.providers.slack.notifications.slack import SlackNotifier

            SlackNotifier(
                slack_conn_id=SLACK_CONN_ID,
                channel=slack_channel,
                text=_slack_text(lines),
                username="Lead SLA Monitor",
                unfurl_links=False,
                unfurl_media=False,
            ).notify(context)
            return
        if not email:
            raise ValueError("quality.yaml incident.email is not set: data engineering gets no e-mail")
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
        from airflow.sdk.bases.hook import BaseHook

        sender = BaseHook.get_connection(SMTP_CONN_ID).extra_dejson.get("from_email") or DEFAULT_FROM
        dag_id = getattr(context.get("dag"), "dag_id", "a DAG")
        SmtpNotifier(
            to=email,
            from_email=sender,
            subject=f"[Lead SLA Monitor] {dag_id} failed",
            html_content="".join(f"<p>{html.escape(line)}</p>" for line in lines),
            smtp_conn_id=SMTP_CONN_ID,
        ).notify(context)


def on_failure() -> list[BaseNotifier]:
    """A DAG's ``on_failure_callback``: data engineering told on Slack and by e-mail."""
    return [DataEngineeringAlert("slack"), DataEngineeringAlert("email")]
