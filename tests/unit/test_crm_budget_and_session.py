"""The API budget arithmetic and warning text; the counting, retrying HTTP session (no network)."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from requests.adapters import BaseAdapter

from leadsla.crm import budget
from leadsla.crm.protocol import CrmError
from leadsla.crm.salesforce import ApiSession, RetryPolicy, http_date


def test_projection_and_warning():
    noon = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC)
    assert budget.projected_calls(3000, noon) == 6000
    early = dt.datetime(2024, 5, 6, 0, 10, tzinfo=dt.UTC)
    assert budget.projected_calls(100, early) == 2400  # pace taken over at least an hour
    assert budget.budget_warning(used_today=3000, projected_today=6000, daily_budget=10000) is None
    text = budget.budget_warning(
        used_today=3000, projected_today=12000, daily_budget=10000, org_remaining=50_000, org_max=100_000
    )
    assert text.startswith("CRM sync is on pace for 12,000 Salesforce API calls today (3,000 so far)")
    assert "50,000 of 100,000" in text and "daily_api_budget" in text
    assert "has used 11,000" in budget.budget_warning(
        used_today=11000, projected_today=11000, daily_budget=10000
    )


class Scripted(BaseAdapter):
    """Answers from a script: an exception class to raise, or a status code (with optional body)."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.sent = 0

    def send(self, request, **kwargs):
        self.sent += 1
        step = self.script.pop(0)
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted")
        status, body = step if isinstance(step, tuple) else (step, b"{}")
        resp = requests.Response()
        resp.status_code, resp._content, resp.url, resp.request = status, body, request.url, request
        return resp

    def close(self):
        pass


def session(script, attempts=4):
    waits: list[float] = []
    s = ApiSession(RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.02), sleep=waits.append)
    adapter = Scripted(script)
    s.mount("https://", adapter)
    return s, adapter, waits


URL = "https://org.example/services/data/v59.0/query/"


def test_5xx_and_timeouts_retry_with_bounded_jittered_backoff():
    s, adapter, waits = session([503, requests.Timeout, requests.ConnectionError, 200])
    assert s.get(URL).status_code == 200
    assert adapter.sent == 4 and s.calls == 4 and s.retries == 3
    assert len(waits) == 3 and all(0 <= w <= 0.02 for w in waits)


def test_gives_up_after_the_bound():
    s, _, _ = session([503, 503], attempts=2)
    assert s.get(URL).status_code == 503  # the caller (simple-salesforce) raises on it
    s, _, _ = session([requests.Timeout, requests.Timeout], attempts=2)
    with pytest.raises(CrmError, match="did not answer GET .* after 2 tries"):
        s.get(URL)


def test_unable_to_lock_row_is_retried_and_client_errors_are_not():
    s, adapter, _ = session([(400, b'[{"errorCode": "UNABLE_TO_LOCK_ROW"}]'), 200])
    assert s.patch(URL).status_code == 200 and adapter.sent == 2
    s, adapter, _ = session([(400, b'[{"errorCode": "MALFORMED_QUERY"}]')])
    assert s.get(URL).status_code == 400 and adapter.sent == 1


def test_login_is_not_counted_as_an_api_call():
    s, _, _ = session([200])
    s.post("https://org.example/services/Soap/u/59.0")
    assert s.calls == 0


def test_http_date_rounds_down_to_the_second():
    assert (
        http_date(dt.datetime(2024, 5, 6, 9, 30, 15, 900000, tzinfo=dt.UTC))
        == "Mon, 06 May 2024 09:30:15 GMT"
    )
