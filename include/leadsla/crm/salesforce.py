"""The Salesforce client: the provider's SalesforceHook (simple-salesforce) behind `CrmClient`.

Every HTTP request goes through `ApiSession`, which counts REST API calls, sets a timeout, and
retries 5xx answers, timeouts, dropped connections and UNABLE_TO_LOCK_ROW with bounded,
jittered exponential back-off. Above it, `SalesforceClient` turns the library's errors into ours:
an expired session (401 INVALID_SESSION_ID that simple-salesforce's own refresh could not cure)
gets one fresh hook and client (the hook caches its client, so a new hook is the only clean
re-login), REQUEST_LIMIT_EXCEEDED becomes `ApiLimitExceeded`, 412 becomes `PreconditionFailed`.

Airflow and simple-salesforce are imported inside functions only. This module must never use the
hook's `write_object_to_file`/`object_to_df` (their pandas text clean-up is broken under pandas 3)
and never logs credentials or session ids.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from leadsla.crm.protocol import ApiLimitExceeded, ApiUsage, CrmError, PreconditionFailed

log = logging.getLogger(__name__)

#: The Airflow connection holding the org's login (`LEADSLA_SALESFORCE_CONN_ID` names another).
DEFAULT_CONN_ID = "salesforce_default"
#: Where record links point when neither $LEADSLA_INSTANCE_URL nor the connection names the org.
DEFAULT_INSTANCE_URL = "https://login.salesforce.com"
#: Composite sObject collections take at most this many records per call.
COMPOSITE_BATCH = 200
_RETRY_STATUSES = {500, 502, 503, 504}
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off with full jitter (tests pass tiny delays)."""

    attempts: int = 4  # tries per request, the first included
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**retry))


def _is_lock_error(resp: requests.Response) -> bool:
    return resp.status_code >= 400 and "UNABLE_TO_LOCK_ROW" in resp.text


class ApiSession(requests.Session):
    """A requests session that counts REST API calls and retries transient failures.

    Only requests under /services/data/ count as API calls (the SOAP login does not count against
    Salesforce's API allowance). Each retry is a real request and is counted.
    """

    def __init__(
        self, policy: RetryPolicy, timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__()
        self.policy = policy
        self.timeout = timeout
        self.sleep = sleep
        self.calls = 0
        self.retries = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        counted = "/services/data/" in str(url)
        for attempt in range(self.policy.attempts):
            last = attempt + 1 >= self.policy.attempts
            if counted:
                self.calls += 1
            try:
                resp = super().request(method, url, *args, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if last:
                    raise CrmError(
                        f"Salesforce did not answer {method} {_path(url)} after {self.policy.attempts} "
                        f"tries ({type(exc).__name__}): check the network and the org's status"
                    ) from None
                reason = type(exc).__name__
            else:
                if last or not (resp.status_code in _RETRY_STATUSES or _is_lock_error(resp)):
                    return resp
                reason = "UNABLE_TO_LOCK_ROW" if _is_lock_error(resp) else f"HTTP {resp.status_code}"
            wait = self.policy.delay(attempt)
            self.retries += 1
            log.warning(
                "Salesforce %s %s: %s, retry %d in %.2fs", method, _path(url), reason, attempt + 1, wait
            )
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _path(url: str) -> str:
    return str(url).split("?")[0].split("://", 1)[-1].partition("/")[2]


def _error_codes(content: Any) -> set[str]:
    if isinstance(content, list):
        return {str(item.get("errorCode")) for item in content if isinstance(item, Mapping)}
    if isinstance(content, Mapping):
        return {str(content.get("errorCode"))}
    return set()


def http_date(value: dt.datetime) -> str:
    """An HTTP-date (If-Unmodified-Since) for an aware datetime; whole seconds, rounded down."""
    if value.tzinfo is None:
        raise ValueError("If-Unmodified-Since needs an aware datetime")
    return email.utils.format_datetime(value.astimezone(dt.UTC).replace(microsecond=0), usegmt=True)


class SalesforceClient:
    """`CrmClient` over the Airflow SalesforceHook; one per task run (it counts that run's calls).

    Args:
        conn_id: the Airflow connection (default `salesforce_default`).
        retry: back-off for transient failures.
        timeout: seconds per HTTP request.
        page_size: ask for smaller query pages (Sforce-Query-Options batchSize), e.g. in tests.
    """

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.conn_id = conn_id
        self.session = ApiSession(retry or RetryPolicy(), timeout, sleep)
        self.page_size = page_size
        self.relogins = 0
        self._sf: Any = None
        self._described: dict[str, dict[str, Any]] = {}
        self._org_used: int | None = None
        self._org_max: int | None = None

    def _connect(self) -> Any:
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

        # A new hook every time: SalesforceHook caches its client, so a stale session needs a new hook.
        self._sf = SalesforceHook(salesforce_conn_id=self.conn_id, session=self.session).get_conn()
        return self._sf

    def _call(self, action: Callable[[Any], T], what: str) -> T:
        from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

        try:
            try:
                return action(self._sf or self._connect())
            except SalesforceExpiredSession:
                log.warning("Salesforce %s: INVALID_SESSION_ID, logging in again once", what)
                self.relogins += 1
                self._connect()
                return action(self._sf)
        except SalesforceError as exc:
            raise self._translate(exc, what) from None
        finally:
            self._note_usage()

    def _translate(self, exc: Any, what: str) -> CrmError:
        codes = _error_codes(getattr(exc, "content", None))
        status = getattr(exc, "status", None)
        if "REQUEST_LIMIT_EXCEEDED" in codes:
            return ApiLimitExceeded(
                f"Salesforce refused {what}: REQUEST_LIMIT_EXCEEDED (the org's daily API allowance is "
                "spent); the cycle stopped and the watermark was kept, the next run resumes from it"
            )
        if status == 412:
            return PreconditionFailed(f"Salesforce refused {what}: a record changed since it was read (412)")
        if status == 401:
            return CrmError(f"Salesforce {what}: the session expired again after a fresh login (401)")
        detail = ", ".join(sorted(codes - {"None"})) or (f"HTTP {status}" if status else str(exc))
        content = getattr(exc, "content", None)
        first = (
            content[0] if isinstance(content, list) and content and isinstance(content[0], Mapping) else {}
        )
        message = str(first.get("message") or "").splitlines()[0][:300] if first.get("message") else ""
        return CrmError(f"Salesforce {what} failed: {detail}" + (f" ({message})" if message else ""))

    def _note_usage(self) -> None:
        usage = getattr(self._sf, "api_usage", None) or {}
        api = usage.get("api-usage")
        if api is not None:
            self._org_used, self._org_max = api.used, api.total

    # --- CrmClient ------------------------------------------------------------------------

    def query_pages(self, soql: str, *, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        headers = {"Sforce-Query-Options": f"batchSize={self.page_size}"} if self.page_size else {}
        result = self._call(
            lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers), "query"
        )
        while True:
            yield list(result.get("records") or [])
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                return
            next_url = result["nextRecordsUrl"]
            result = self._call(
                lambda sf, u=next_url: sf.query_more(u, identifier_is_url=True, headers=headers), "query_more"
            )

    def _describe(self, object_name: str) -> dict[str, Any]:
        # One describe per object per client (a task run): fields and picklists share it.
        if object_name not in self._described:
            result = self._call(
                lambda sf: sf.restful(f"sobjects/{object_name}/describe"), f"describe {object_name}"
            )
            self._described[object_name] = result or {}
        return self._described[object_name]

    def describe_fields(self, object_name: str) -> set[str]:
        return {f["name"] for f in self._describe(object_name).get("fields", [])}

    def describe_picklists(self, object_name: str) -> dict[str, list[str]]:
        return {
            f["name"]: [v["value"] for v in f.get("picklistValues") or [] if v.get("active", True)]
            for f in self._describe(object_name).get("fields", [])
            if f.get("type") in ("picklist", "multipicklist")
        }

    def describe_field_types(self, object_name: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: field_type(f) for f in self._describe(object_name).get("fields", [])}

    def update_records(
        self, object_name: str, records: Sequence[Mapping[str, Any]], *, if_unmodified_since: dt.datetime
    ) -> list[dict[str, Any]]:
        if len(records) > COMPOSITE_BATCH:
            raise ValueError(f"at most {COMPOSITE_BATCH} records per composite call, got {len(records)}")
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": object_name}, **r} for r in records],
        }
        headers = {"If-Unmodified-Since": http_date(if_unmodified_since)}
        result = self._call(
            lambda sf: sf.restful(
                "composite/sobjects", method="PATCH", data=json.dumps(body, default=str), headers=headers
            ),
            f"update of {len(records)} {object_name} records",
        )
        return list(result or [])

    def usage(self) -> ApiUsage:
        return ApiUsage(calls=self.session.calls, org_used=self._org_used, org_max=self._org_max)


def field_type(described: Mapping[str, Any]) -> dict[str, Any]:
    """The part of one describe() field entry that says what it can hold (small JSON, stored)."""
    return {
        "type": described.get("type"),
        "updateable": bool(described.get("updateable")),
        "length": int(described.get("length") or 0),
        "precision": int(described.get("precision") or 0),
        "scale": int(described.get("scale") or 0),
        "picklist": [v["value"] for v in described.get("picklistValues") or [] if v.get("active", True)],
        "reference_to": list(described.get("referenceTo") or []),
    }


def conn_id_from_env() -> str:
    """The Salesforce connection id: $LEADSLA_SALESFORCE_CONN_ID, else `DEFAULT_CONN_ID`."""
    return os.environ.get("LEADSLA_SALESFORCE_CONN_ID") or DEFAULT_CONN_ID


def instance_url(conn_id: str | None = None) -> str:
    """The org's base URL for record links: $LEADSLA_INSTANCE_URL, else the connection's
    `instance_url` extra or host, else the login host.

    Only a missing connection falls back (logged); any other error from the connection lookup
    (a broken secrets backend, say) propagates, so it is seen rather than hidden behind links
    to the wrong host.
    """
    url = os.environ.get("LEADSLA_INSTANCE_URL")
    if url:
        return url.rstrip("/")
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = conn_id or conn_id_from_env()
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.warning("connection %s is not defined: record links point at %s", conn_id, DEFAULT_INSTANCE_URL)
        return DEFAULT_INSTANCE_URL
    host = (conn.extra_dejson or {}).get("instance_url") or conn.host
    if not host:
        return DEFAULT_INSTANCE_URL
    return host if host.startswith("http") else f"https://{host}"


def streaming_allowed(conn_id: str | None = None) -> bool:
    """Whether the connection lets crm_sync hear changes as events (its extra `"streaming": false`
    turns streaming off; absent: allowed)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id or conn_id_from_env())
    value = (conn.extra_dejson or {}).get("streaming", True)
    return value not in (False, "false", "False", "0", 0)


def streaming_session(conn_id: str | None = None) -> Any:
    """A fresh login through the SalesforceHook, as the Streaming API needs it: the org's instance
    URL, the session (a bearer token, never logged) and the API version (`crm.streaming.Session`)."""
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    from leadsla.crm.streaming import Session

    sf = SalesforceHook(salesforce_conn_id=conn_id or conn_id_from_env()).get_conn()
    return Session(instance_url=f"https://{sf.sf_instance}", session_id=sf.session_id, version=sf.sf_version)
