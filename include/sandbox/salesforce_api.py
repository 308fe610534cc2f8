"""A local Salesforce REST API over HTTPS that the unmodified SalesforceHook / simple-salesforce
client talks to: SOAP username-password-token login, versions, query/queryAll with paging,
sObject rows, describe, composite sobjects, limits, API-usage accounting and fault injection.

Run it: `python -m sandbox.salesforce_api --port 8443 --data DIR` (prints the address, the CA
bundle path and the connection JSON). Tests start it in-process (see tests/sandbox_fixtures.py).

The Streaming API (CometD long-polling with Change Data Capture for every change the org makes)
is at POST /cometd/<version> (`sf_cometd`, `sf_events`).

Admin endpoints (no auth, sandbox only) live under /_sandbox/: GET status, POST faults (add
rules), DELETE faults, POST expire-sessions, POST config ({"page_size", "daily_limit",
"api_used", "cdc_retention_s", "cometd_timeout_s", "streaming"}). This module must never reach
beyond 127.0.0.1 nor hold data itself: the org lives in sf_store.OrgStore (SQLite).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from sandbox import certs, sf_cometd, sf_schema
from sandbox.sf_query import BoundQuery
from sandbox.sf_store import OrgStore, SfError
from sandbox.soql import SoqlError

DEFAULT_USERNAME = "integration@leadsla.sandbox"
DEFAULT_PASSWORD = "sandbox-password"  # noqa: S105 - a loopback sandbox credential, not a secret
DEFAULT_TOKEN = "sandbox-token"  # noqa: S105
ORG_ID = "00D8d0000000001EAA"
VERSIONS = ["55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0"]
FAULT_KINDS = {
    "INVALID_SESSION_ID",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "UNABLE_TO_LOCK_ROW",
    "SLOW",
}
ENDPOINTS = {"*", "login", "query", "sobject", "describe", "composite", "limits", "versions"}


@dataclass
class FaultRule:
    """Inject `fault` into requests to `endpoint` (optionally one HTTP method).

    Skips the first `after` matching requests, then fires on the next `times` ones (None: forever).
    UNABLE_TO_LOCK_ROW only fires on writes (POST/PATCH/DELETE). SLOW sleeps `delay_s` seconds and
    then answers normally.
    """

    fault: str
    endpoint: str = "*"
    method: str | None = None
    times: int | None = 1
    after: int = 0
    delay_s: float = 0.0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self.fault = self.fault.upper()
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault '{self.fault}': expected one of {sorted(FAULT_KINDS)}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint '{self.endpoint}': expected one of {sorted(ENDPOINTS)}")

    def matches(self, endpoint: str, method: str) -> bool:
        if self.endpoint not in ("*", endpoint):
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.fault == "UNABLE_TO_LOCK_ROW" and method not in ("POST", "PATCH", "DELETE"):
            return False
        if self.fault == "UNABLE_TO_LOCK_ROW" and endpoint not in ("sobject", "composite"):
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict:
        return {
            "fault": self.fault,
            "endpoint": self.endpoint,
            "method": self.method,
            "times": self.times,
            "after": self.after,
            "delay_s": self.delay_s,
            "fired": self.fired,
        }


@dataclass
class Cursor:
    bound: BoundQuery
    ids: list[str]
    version: str


@dataclass
class SandboxState:
    """Everything the server keeps besides the org data: sessions, faults, usage, cursors."""

    store: OrgStore
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    security_token: str = DEFAULT_TOKEN
    page_size: int = 2000
    daily_limit: int = 100_000
    api_used: int = 0
    sessions: set[str] = field(default_factory=set)
    faults: list[FaultRule] = field(default_factory=list)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    logins: int = 0
    in_flight: int = 0
    usage_day: date = field(default_factory=lambda: datetime.now(UTC).date())
    calls: dict[str, int] = field(default_factory=dict)  # REST requests per endpoint (query, sobject...)
    cometd: sf_cometd.CometdState = field(default_factory=sf_cometd.CometdState)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_faults(self, rules: list[dict]) -> list[FaultRule]:
        new = [FaultRule(**{k: v for k, v in r.items() if k not in ("seen", "fired")}) for r in rules]
        with self.lock:
            self.faults.extend(new)
        return new

    def pick_fault(self, endpoint: str, method: str) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.matches(endpoint, method):
                    return rule
        return None

    def count_call(self) -> tuple[int, bool]:
        """Count one API call; returns (usage after it, whether the org is over its limit)."""
        with self.lock:
            today = datetime.now(UTC).date()
            if today != self.usage_day:  # the allowance is a rolling day; a calendar day is close enough
                self.usage_day, self.api_used = today, 0
            if self.api_used >= self.daily_limit:
                return self.api_used, True
            self.api_used += 1
            return self.api_used, False


_SOAP_OK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body><loginResponse><result>"
    "<metadataServerUrl>{base}/services/Soap/m/{version}/{org}</metadataServerUrl>"
    "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
    "<serverUrl>{base}/services/Soap/u/{version}/{org}</serverUrl><sessionId>{sid}</sessionId>"
    "<userId>{user}</userId><userInfo><organizationId>{org}</organizationId>"
    "<organizationName>Lead SLA Sandbox</organizationName><userEmail>{username}</userEmail>"
    "<userFullName>Integration User</userFullName><userId>{user}</userId><userName>{username}</userName>"
    "<userTimeZone>UTC</userTimeZone></userInfo></result></loginResponse></soapenv:Body>"
    "</soapenv:Envelope>"
)
_SOAP_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>"
    '<faultstring>{code}: {message}</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">'
    "<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage>"
    "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)

_DATA_RE = re.compile(r"^/services/data/v(\d+\.\d+)(/.*)?$")
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")


class _Reply(Exception):
    """Short-circuits a handler with a full response."""

    def __init__(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def _error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, [{"message": message, "errorCode": code}])


class Handler(BaseHTTPRequestHandler):
    """One HTTP request against the sandbox org."""

    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    # dispatch --------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        with self.server.state.lock:
            self.server.state.in_flight += 1
        try:
            self._handle_counted(method)
        finally:
            with self.server.state.lock:
                self.server.state.in_flight -= 1

    def _handle_counted(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        limit_header = None
        try:
            if url.path.startswith("/_sandbox/"):
                raise self._admin(method, url.path, raw)
            if url.path.startswith("/services/Soap/u/"):
                self._maybe_fault("login", method)
                raise self._login(raw, url.path)
            if url.path.rstrip("/") == "/services/data":
                self._maybe_fault("versions", method)
                raise _Reply(
                    200, [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS]
                )
            if url.path.startswith("/cometd/") and method == "POST":
                raise self._cometd(url.path, raw)
            m = _DATA_RE.match(url.path)
            if not m:
                raise _error(404, "NOT_FOUND", "The requested resource does not exist")
            version, rest = m.group(1), (m.group(2) or "/").rstrip("/") or "/"
            endpoint = _endpoint_of(rest)
            fault = self._maybe_fault(endpoint, method)
            with state.lock:
                state.calls[endpoint] = state.calls.get(endpoint, 0) + 1
            self._authenticate()
            used, over = state.count_call()
            limit_header = f"api-usage={used}/{state.daily_limit}"
            if over:
                raise _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            if fault is not None and fault.fault == "UNABLE_TO_LOCK_ROW" and endpoint == "sobject":
                raise _error(
                    400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records"
                )
            lock_all = fault is not None and fault.fault == "UNABLE_TO_LOCK_ROW"
            raise self._api(method, version, rest, parse_qs(url.query), raw, lock_all)
        except _Reply as reply:
            self._send(reply, limit_header)
        except SfError as exc:
            self._send(_Reply(exc.status, exc.body()), limit_header)
        except SoqlError as exc:
            self._send(_Reply(400, [{"message": exc.message, "errorCode": exc.code}]), limit_header)
        except Exception as exc:  # noqa: BLE001 - a server answers 500 rather than dropping the socket
            self._send(_error(500, "UNKNOWN_EXCEPTION", f"{type(exc).__name__}: {exc}"), limit_header)

    def _send(self, reply: _Reply, limit_header: str | None) -> None:
        if reply.body is None:
            payload = b""
        elif isinstance(reply.body, (bytes, str)):
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", f"{reply.content_type};charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        if limit_header is None:
            state = self.server.state
            limit_header = f"api-usage={state.api_used}/{state.daily_limit}"
        self.send_header("Sforce-Limit-Info", limit_header)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _maybe_fault(self, endpoint: str, method: str) -> FaultRule | None:
        rule = self.server.state.pick_fault(endpoint, method)
        if rule is None:
            return None
        if rule.fault == "SLOW":
            time.sleep(rule.delay_s)
            return None
        if rule.fault == "INVALID_SESSION_ID":
            # The session really dies: the client must log in again to go on.
            with self.server.state.lock:
                self.server.state.sessions.clear()
            if endpoint == "login":
                return None
            return rule
        if rule.fault == "REQUEST_LIMIT_EXCEEDED":
            raise _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        if rule.fault == "SERVER_UNAVAILABLE":
            raise _Reply(
                503, [{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
            )
        return rule  # UNABLE_TO_LOCK_ROW: answered after authentication, per record

    def _session(self) -> str | None:
        """The request's bearer session when it is a live one."""
        auth = self.headers.get("Authorization") or ""
        sid = auth[7:] if auth.startswith("Bearer ") else auth[6:] if auth.startswith("OAuth ") else ""
        with self.server.state.lock:
            return sid if sid and sid in self.server.state.sessions else None

    def _authenticate(self) -> None:
        if self._session() is None:
            raise _error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _cometd(self, path: str, raw: bytes) -> _Reply:
        """One Bayeux long-polling POST (`sf_cometd`): a JSON array of messages in and out."""
        version = path[len("/cometd/") :].strip("/")
        problem = sf_cometd.check_version(version)
        if problem:
            return _Reply(400, [{"successful": False, "error": problem}])
        try:
            messages = json.loads(raw or b"[]")
        except ValueError:
            return _Reply(400, [{"successful": False, "error": "400::Invalid JSON"}])
        if isinstance(messages, dict):
            messages = [messages]
        state = self.server.state
        return _Reply(200, sf_cometd.handle(state.cometd, state.store, version, self._session(), messages))

    # login -----------------------------------------------------------------

    def _login(self, raw: bytes, path: str) -> _Reply:
        state = self.server.state
        text = raw.decode("utf-8", "replace")
        username = _xml_value(text, "username")
        password = _xml_value(text, "password")
        version = path.split("/")[4] if len(path.split("/")) > 4 else "59.0"
        if username != escape(state.username) or password != escape(state.password + state.security_token):
            body = _SOAP_FAULT.format(
                code="INVALID_LOGIN",
                message="Invalid username, password, security token; or user locked out.",
            )
            raise _Reply(500, body, "text/xml")
        sid = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        with state.lock:
            state.sessions.add(sid)
            state.logins += 1
        body = _SOAP_OK.format(
            base=self.server.base_url,
            version=version,
            org=ORG_ID,
            sid=sid,
            user=state.store.integration_user_id,
            username=escape(state.username),
        )
        return _Reply(200, body, "text/xml")

    # admin -----------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> _Reply:
        state = self.server.state
        body = json.loads(raw or b"{}")
        if path == "/_sandbox/status" and method == "GET":
            return _Reply(
                200,
                {
                    "api_used": state.api_used,
                    "daily_limit": state.daily_limit,
                    "page_size": state.page_size,
                    "logins": state.logins,
                    "sessions": len(state.sessions),
                    "calls": dict(state.calls),
                    "cometd": state.cometd.to_json(),
                    "faults": [f.to_json() for f in state.faults],
                },
            )
        if path == "/_sandbox/faults" and method == "POST":
            try:
                rules = state.add_faults(body.get("faults", []))
            except (TypeError, ValueError) as exc:
                return _Reply(400, {"error": str(exc)})
            return _Reply(200, {"added": len(rules)})
        if path == "/_sandbox/faults" and method == "DELETE":
            with state.lock:
                state.faults.clear()
            return _Reply(204)
        if path == "/_sandbox/expire-sessions" and method == "POST":
            with state.lock:
                state.sessions.clear()
            return _Reply(204)
        if path == "/_sandbox/config" and method == "POST":
            with state.lock:
                for key in ("page_size", "daily_limit", "api_used"):
                    if key in body:
                        setattr(state, key, int(body[key]))
                if "cdc_retention_s" in body:
                    state.cometd.retention_s = float(body["cdc_retention_s"])
                if "cometd_timeout_s" in body:
                    state.cometd.timeout_s = float(body["cometd_timeout_s"])
                if "streaming" in body:
                    state.cometd.enabled = bool(body["streaming"])
            return _Reply(204)
        return _Reply(404, {"error": f"no admin endpoint {method} {path}"})

    # REST ------------------------------------------------------------------

    def _api(
        self, method: str, version: str, rest: str, params: dict[str, list[str]], raw: bytes, lock_all: bool
    ) -> _Reply:
        state = self.server.state
        parts = [p for p in rest.split("/") if p]
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _error(400, "JSON_PARSER_ERROR", f"Unexpected character in the body: {exc}") from exc
        if not parts:
            return _Reply(
                200,
                {
                    k: f"/services/data/v{version}/{k}"
                    for k in ("sobjects", "query", "queryAll", "limits", "composite")
                },
            )
        head = parts[0]
        if head in ("query", "queryAll") and method == "GET":
            return _Reply(200, self._query(version, parts, params, include_deleted=head == "queryAll"))
        if head == "limits" and method == "GET":
            return _Reply(
                200,
                {
                    "DailyApiRequests": {
                        "Max": state.daily_limit,
                        "Remaining": state.daily_limit - state.api_used,
                    },
                    "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                    "DataStorageMB": {"Max": 1024, "Remaining": 1000},
                },
            )
        if head == "sobjects":
            return self._sobjects(method, version, parts[1:], params, body)
        if head == "composite" and len(parts) >= 2 and parts[1] == "sobjects":
            return self._composite(method, version, parts[2:], params, body, lock_all)
        raise _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _query(
        self, version: str, parts: list[str], params: dict[str, list[str]], include_deleted: bool
    ) -> dict:
        state = self.server.state
        batch = state.page_size
        options = self.headers.get("Sforce-Query-Options") or ""
        m = re.search(r"batchSize=(\d+)", options)
        if m:
            batch = max(1, min(int(m.group(1)), 2000))
        if len(parts) == 2:  # next page: 01gXXXX-2000
            locator, _, offset_text = parts[1].rpartition("-")
            with state.lock:
                cursor = state.cursors.get(locator)
            if cursor is None or not offset_text.isdigit():
                raise _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(locator, cursor, int(offset_text), batch)
        text = (params.get("q") or [""])[0]
        bound = BoundQuery(text)
        if bound.query.is_count and bound.query.fields[0].path:
            rows = bound.matching(state.store, include_deleted)
            item = bound.query.fields[0]
            n = sum(1 for r in rows if bound.get(r, item.path) is not None)
            return {
                "totalSize": 1,
                "done": True,
                "records": [{"attributes": {"type": "AggregateResult"}, item.alias or "expr0": n}],
            }
        ids, first = bound.matching_ids(
            state.store, include_deleted, keep=0 if bound.query.is_count else batch
        )
        if bound.query.is_count:
            return {"totalSize": len(ids), "done": True, "records": []}
        if len(ids) <= batch:
            bound.prefetch(first)
            return {
                "totalSize": len(ids),
                "done": True,
                "records": [bound.project(r, version) for r in first],
            }
        locator = "01g" + secrets.token_hex(6).upper()[:12]
        cursor = Cursor(bound, ids, version)
        with state.lock:
            state.cursors[locator] = cursor
            while len(state.cursors) > 100:  # forget the oldest cursors, like an org's cursor limit
                state.cursors.pop(next(iter(state.cursors)))
        return self._page(locator, cursor, 0, batch, first)

    def _page(
        self, locator: str, cursor: Cursor, offset: int, batch: int, rows: list[dict] | None = None
    ) -> dict:
        ids = cursor.ids[offset : offset + batch]
        if rows is None:
            found = self.server.state.store.get_many(ids)
            rows = [found[i] for i in ids if i in found]
        cursor.bound.store = self.server.state.store
        cursor.bound.prefetch(rows)
        end = offset + len(ids)
        page: dict[str, Any] = {
            "totalSize": len(cursor.ids),
            "done": end >= len(cursor.ids),
            "records": [cursor.bound.project(r, cursor.version) for r in rows],
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{cursor.version}/query/{locator}-{end}"
        else:
            with self.server.state.lock:
                self.server.state.cursors.pop(locator, None)
        return page

    def _sobjects(
        self, method: str, version: str, parts: list[str], params: dict[str, list[str]], body: Any
    ) -> _Reply:
        store = self.server.state.store
        if not parts and method == "GET":
            return _Reply(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [_describe_brief(o, version) for o in sf_schema.OBJECTS.values()],
                },
            )
        obj = sf_schema.sobject(parts[0]) if parts else None
        if obj is None:
            raise _error(404, "NOT_FOUND", "The requested resource does not exist")
        if len(parts) == 1:
            if method == "GET":
                return _Reply(200, {"objectDescribe": _describe_brief(obj, version), "recentItems": []})
            if method == "POST":
                row = store.create(obj.name, _record_body(body))
                return _Reply(201, {"id": row["Id"], "success": True, "errors": []})
        if len(parts) == 2 and parts[1] == "describe" and method == "GET":
            return _Reply(200, _describe_full(obj, version))
        if len(parts) == 2 and _ID_RE.match(parts[1]):
            rid = parts[1]
            if method == "GET":
                row = store.get(obj.name, rid)
                if row.get("IsDeleted"):
                    raise _error(404, "NOT_FOUND", "The requested resource does not exist")
                wanted = (params.get("fields") or [""])[0]
                names = (
                    [f.name for f in obj.fields]
                    if not wanted
                    else [_field_or_error(obj, n.strip()).name for n in wanted.split(",") if n.strip()]
                )
                out = {
                    "attributes": {
                        "type": obj.name,
                        "url": f"/services/data/v{version}/sobjects/{obj.name}/{rid}",
                    }
                }
                out.update({n: row.get(n) for n in names})
                return _Reply(200, out)
            if method == "PATCH":
                store.update(
                    obj.name,
                    rid,
                    _record_body(body),
                    if_unmodified_since=self.headers.get("If-Unmodified-Since"),
                )
                return _Reply(204)
            if method == "DELETE":
                store.delete(obj.name, rid)
                return _Reply(204)
        raise _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _composite(
        self,
        method: str,
        version: str,
        parts: list[str],
        params: dict[str, list[str]],
        body: Any,
        lock_all: bool,
    ) -> _Reply:
        store = self.server.state.store
        if method == "GET" and len(parts) == 1:
            obj = sf_schema.sobject(parts[0])
            if obj is None:
                raise _error(404, "NOT_FOUND", "The requested resource does not exist")
            ids = [i for i in (params.get("ids") or [""])[0].split(",") if i]
            names = [_field_or_error(obj, n).name for n in (params.get("fields") or [""])[0].split(",") if n]
            found = store.get_many(ids)
            out: list[Any] = []
            for rid in ids:
                row = found.get(rid)
                if row is None or row.get("IsDeleted") or row.get("__type") != obj.name:
                    out.append(None)
                    continue
                rec = {
                    "attributes": {
                        "type": obj.name,
                        "url": f"/services/data/v{version}/sobjects/{obj.name}/{rid}",
                    }
                }
                rec.update({n: row.get(n) for n in names})
                out.append(rec)
            return _Reply(200, out)
        if method == "DELETE":
            ids = [i for i in (params.get("ids") or [""])[0].split(",") if i]
            all_or_none = (params.get("allOrNone") or ["false"])[0].lower() == "true"
            ops = [("delete", None, rid, {}) for rid in ids]
        elif method in ("POST", "PATCH"):
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise _error(
                    400, "JSON_PARSER_ERROR", 'the body must be {"allOrNone": ..., "records": [...]}'
                )
            all_or_none = bool(body.get("allOrNone", False))
            ops = []
            for rec in body["records"]:
                type_name = (rec.get("attributes") or {}).get("type") if isinstance(rec, dict) else None
                fields = {k: v for k, v in rec.items() if k not in ("attributes", "Id", "id")}
                rid = rec.get("Id") or rec.get("id")
                ops.append(("create" if method == "POST" else "update", type_name, rid, fields))
        else:
            raise _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
        if len(ops) > 200:
            raise _error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        if lock_all:
            err = {
                "statusCode": "UNABLE_TO_LOCK_ROW",
                "message": "unable to obtain exclusive access to this record or 1 records",
                "fields": [],
            }
            return _Reply(200, [{"id": rid, "success": False, "errors": [err]} for _, _, rid, _ in ops])
        results = store.apply_batch(
            ops, all_or_none=all_or_none, if_unmodified_since=self.headers.get("If-Unmodified-Since")
        )
        return _Reply(200, results)


def _endpoint_of(rest: str) -> str:
    parts = [p for p in rest.split("/") if p]
    if not parts:
        return "versions"
    if parts[0] in ("query", "queryAll"):
        return "query"
    if parts[0] == "limits":
        return "limits"
    if parts[0] == "composite":
        return "composite"
    if parts[0] == "sobjects" and (len(parts) == 1 or parts[-1] == "describe"):
        return "describe"
    return "sobject"


def _xml_value(text: str, tag: str) -> str | None:
    m = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", text, re.DOTALL)
    return m.group(1) if m else None


def _record_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise _error(400, "JSON_PARSER_ERROR", "the request body must be a JSON object of field values")
    return {k: v for k, v in body.items() if k != "attributes"}


def _field_or_error(obj: sf_schema.SObject, name: str) -> sf_schema.Field:
    f = obj.field(name)
    if f is None:
        raise _error(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'")
    return f


def _describe_brief(obj: sf_schema.SObject, version: str) -> dict:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "name": obj.name,
        "label": obj.label or obj.name,
        "keyPrefix": obj.key_prefix,
        "queryable": obj.queryable,
        "createable": obj.writable,
        "updateable": obj.writable,
        "deletable": obj.writable,
        "custom": False,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def _describe_full(obj: sf_schema.SObject, version: str) -> dict:
    out = _describe_brief(obj, version)
    out["fields"] = [f.describe() for f in obj.fields]
    out["childRelationships"] = []
    return out


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer over TLS carrying the sandbox state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: SandboxState, context: ssl.SSLContext, verbose: bool = False
    ) -> None:
        super().__init__(address, Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.state = state
        self.verbose = verbose

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"https://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            return  # the client went away (a timeout on a SLOW fault, a test ending): nothing to say
        super().handle_error(request, client_address)


@dataclass
class RunningSandbox:
    """A started server: where it listens, how to connect, and its state (for tests and benches)."""

    server: SandboxHTTPServer
    thread: threading.Thread | None
    store: OrgStore
    ca_path: Path
    data_dir: Path

    @property
    def state(self) -> SandboxState:
        return self.server.state

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def connection(self, version: str = "59.0") -> dict:
        """The Airflow `salesforce_default` connection as a dict (conn_type, login, password, extra)."""
        st = self.state
        return {
            "conn_type": "salesforce",
            "login": st.username,
            "password": st.password,
            "extra": {
                "security_token": st.security_token,
                # simple-salesforce builds https://{domain}.salesforce.com/services/Soap/u/{version};
                # everything after '#' is a URL fragment requests never sends.
                "domain": f"127.0.0.1:{self.port}/services/Soap/u/{version}#",
                "version": version,
            },
        }

    def connection_json(self, version: str = "59.0") -> str:
        return json.dumps(self.connection(version))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        # Let requests still running (a SLOW fault whose client gave up) finish before the store closes.
        deadline = time.monotonic() + 5
        while self.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.store.close()


def start(
    data_dir: str | Path,
    port: int = 0,
    *,
    page_size: int = 2000,
    daily_limit: int = 100_000,
    faults: list[dict] | None = None,
    verbose: bool = False,
    background: bool = True,
    cdc_retention_s: float | None = None,
    cometd_timeout_s: float | None = None,
) -> RunningSandbox:
    """Start the sandbox API on 127.0.0.1 (`port` 0 picks a free one).

    Args:
        data_dir: holds org.sqlite3 (the org, kept across restarts) and certs/ (new at every start).
        background: serve from a daemon thread (tests); False leaves serving to the caller.
        cdc_retention_s: how long change events stay replayable (default 72 h, as a real org).
        cometd_timeout_s: the longest a /meta/connect is held (default 110 s, as a real org).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = certs.generate(data_dir / "certs")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    store = OrgStore(data_dir / "org.sqlite3")
    state = SandboxState(store=store, page_size=page_size, daily_limit=daily_limit)
    if faults:
        state.add_faults(faults)
    if cdc_retention_s is not None:
        state.cometd.retention_s = cdc_retention_s
    if cometd_timeout_s is not None:
        state.cometd.timeout_s = cometd_timeout_s
    server = SandboxHTTPServer(("127.0.0.1", port), state, context, verbose=verbose)
    thread = None
    if background:
        thread = threading.Thread(target=server.serve_forever, name="salesforce-sandbox", daemon=True)
        thread.start()
    return RunningSandbox(server, thread, store, ca_path, data_dir)


def load_faults(path: Path) -> dict:
    """A fault file: JSON or YAML with `faults: [...]` and optional page_size/daily_limit."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.salesforce_api", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--data", required=True, help="directory for the org's SQLite file and certificates")
    parser.add_argument("--faults", type=Path, help="JSON/YAML file with fault rules (see FaultRule)")
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--daily-limit", type=int, default=100_000)
    parser.add_argument("--cdc-retention-s", type=float, help="change event retention (default 72 h)")
    parser.add_argument("--cometd-timeout-s", type=float, help="longest /meta/connect hold (default 110 s)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    config = load_faults(args.faults) if args.faults else {}
    sandbox = start(
        args.data,
        args.port,
        page_size=int(config.get("page_size", args.page_size)),
        daily_limit=int(config.get("daily_limit", args.daily_limit)),
        faults=config.get("faults"),
        verbose=args.verbose,
        background=False,
        cdc_retention_s=args.cdc_retention_s,
        cometd_timeout_s=args.cometd_timeout_s,
    )
    print(
        f"Salesforce sandbox listening on {sandbox.base_url} (data {Path(args.data).resolve()})", flush=True
    )
    print(
        f"CA bundle: {sandbox.ca_path.resolve()}  (export REQUESTS_CA_BUNDLE={sandbox.ca_path.resolve()})",
        flush=True,
    )
    print(f"AIRFLOW_CONN_SALESFORCE_DEFAULT='{sandbox.connection_json()}'", flush=True)
    try:
        sandbox.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.server.server_close()
        sandbox.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
