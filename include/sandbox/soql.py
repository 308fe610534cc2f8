"""A SOQL subset: tokenizer, recursive-descent parser and evaluator over plain row dicts.

Supported: SELECT field lists (with relationship paths such as Owner.Email), COUNT() and
COUNT(field) [alias], FROM, WHERE with AND/OR/NOT and parentheses, = != <> < > <= >= IN, NOT IN,
LIKE, NULL, string ('\\'' escapes), number, boolean, date, datetime literals and the date
literals TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n, NEXT_N_DAYS:n, N_DAYS_AGO:n, ORDER BY
(ASC/DESC, NULLS FIRST/LAST), LIMIT and OFFSET.

Anything else must raise `SoqlError` (MALFORMED_QUERY, or INVALID_FIELD/INVALID_TYPE for names)
so the server answers Salesforce's own error shape: it must never return a result for a query it
did not fully understand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sandbox import sf_schema


class SoqlError(Exception):
    """A query Salesforce would refuse; `code` is its errorCode."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![T\d]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def tokenize(soql: str) -> list[Token]:
    """Split a SOQL string into tokens; an unknown character is MALFORMED_QUERY."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(soql):
        m = _TOKEN_RE.match(soql, pos)
        if not m:
            raise SoqlError(f"unexpected token: '{soql[pos : pos + 20]}' at position {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "", len(soql)))
    return tokens


def _unquote(text: str) -> str:
    out: list[str] = []
    body = text[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SoqlError(f"Invalid string literal {text}: illegal escape sequence \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- AST


@dataclass(frozen=True)
class DateRange:
    """A relative date literal (TODAY, LAST_N_DAYS:n...) resolved to [start, end) in UTC."""

    name: str
    start: datetime
    end: datetime


@dataclass
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, daterange
    value: Any
    text: str


@dataclass
class Compare:
    field: str
    op: str  # = != < > <= >= in notin like
    value: Literal | list[Literal]


@dataclass
class BoolOp:
    op: str  # and, or, not
    args: list[Any]


@dataclass
class SelectItem:
    path: str
    count: bool = False
    alias: str | None = None


@dataclass
class OrderItem:
    path: str
    descending: bool = False
    nulls_last: bool = False


@dataclass
class Query:
    fields: list[SelectItem]
    sobject: str
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    @property
    def is_count(self) -> bool:
        return any(f.count for f in self.fields)


# ---------------------------------------------------------------- parser

_RESERVED = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "NULL",
    "TRUE",
    "FALSE",
    "GROUP",
    "HAVING",
    "INCLUDES",
    "EXCLUDES",
    "WITH",
    "FOR",
    "USING",
    "TYPEOF",
    "ROLLUP",
    "CUBE",
}
_DATE_KEYWORDS = {"TODAY", "YESTERDAY", "TOMORROW"}
_DATE_N_KEYWORDS = {"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"}


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


def date_range(name: str, n: int | None, now: datetime) -> DateRange:
    """Resolve a relative date literal against `now` (the org's time zone is UTC here)."""
    today = now.astimezone(UTC).date()
    day = timedelta(days=1)
    if name == "TODAY":
        start, end = _midnight(today), _midnight(today + day)
    elif name == "YESTERDAY":
        start, end = _midnight(today - day), _midnight(today)
    elif name == "TOMORROW":
        start, end = _midnight(today + day), _midnight(today + 2 * day)
    elif name == "LAST_N_DAYS":
        # Salesforce: today and the n days before it.
        start, end = _midnight(today - n * day), _midnight(today + day)
    elif name == "NEXT_N_DAYS":
        start, end = _midnight(today + day), _midnight(today + (n + 1) * day)
    elif name == "N_DAYS_AGO":
        start, end = _midnight(today - n * day), _midnight(today - (n - 1) * day)
    else:  # pragma: no cover - guarded by the parser
        raise SoqlError(f"unsupported date literal {name}")
    label = name if n is None else f"{name}:{n}"
    return DateRange(label, start, end)


class _Parser:
    def __init__(self, soql: str, now: datetime) -> None:
        self.tokens = tokenize(soql)
        self.i = 0
        self.now = now

    # token helpers
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.upper in words

    def expect_kw(self, word: str) -> None:
        tok = self.next()
        if tok.kind != "name" or tok.upper != word:
            raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}', expected {word}")

    def expect_punct(self, ch: str) -> None:
        tok = self.next()
        if tok.text != ch:
            raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}', expected '{ch}'")

    def name(self, what: str) -> str:
        tok = self.next()
        if tok.kind != "name" or tok.upper in _RESERVED:
            raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}', expected {what}")
        return tok.text

    # grammar
    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields = [self.select_item()]
        while self.peek().text == ",":
            self.next()
            fields.append(self.select_item())
        self.expect_kw("FROM")
        tok = self.next()
        # Group is a reserved word that is also an sObject (queues): after FROM any name is an object.
        if tok.kind != "name" or "." in tok.text:
            raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}', expected an object name")
        sobject = tok.text
        q = Query(fields, sobject)
        if self.at_kw("WHERE"):
            self.next()
            q.where = self.or_expr()
        if self.at_kw("ORDER"):
            self.next()
            self.expect_kw("BY")
            q.order_by.append(self.order_item())
            while self.peek().text == ",":
                self.next()
                q.order_by.append(self.order_item())
        if self.at_kw("LIMIT"):
            self.next()
            q.limit = self.integer("LIMIT")
        if self.at_kw("OFFSET"):
            self.next()
            q.offset = self.integer("OFFSET")
            if q.offset > 2000:
                raise SoqlError("maximum SOQL offset allowed is 2000", "NUMBER_OUTSIDE_VALID_RANGE")
        tok = self.peek()
        if tok.kind != "eof":
            raise SoqlError(f"unexpected token: '{tok.text}'")
        if q.is_count and len(q.fields) > 1:
            raise SoqlError("COUNT() cannot be combined with other fields without GROUP BY")
        if q.is_count and q.order_by:
            raise SoqlError("ORDER BY is not supported with an aggregate query without GROUP BY")
        return q

    def integer(self, what: str) -> int:
        tok = self.next()
        if tok.kind != "number" or not tok.text.isdigit():
            raise SoqlError(f"{what} must be a non-negative integer, got '{tok.text}'")
        return int(tok.text)

    def select_item(self) -> SelectItem:
        tok = self.peek()
        if tok.kind == "name" and tok.upper == "COUNT" and self.peek(1).text == "(":
            self.next()
            self.next()
            path = ""
            if self.peek().text != ")":
                path = self.name("a field name")
            self.expect_punct(")")
            alias = None
            if self.peek().kind == "name" and self.peek().upper not in _RESERVED:
                alias = self.next().text
            return SelectItem(path, count=True, alias=alias)
        if tok.kind == "punct" and tok.text == "(":
            raise SoqlError("relationship subqueries are not supported by the sandbox")
        if tok.kind == "name" and self.peek(1).text == "(":
            raise SoqlError(f"unsupported function '{tok.text}'")
        return SelectItem(self.name("a field name"))

    def order_item(self) -> OrderItem:
        path = self.name("a field name")
        descending = False
        if self.at_kw("ASC", "DESC"):
            descending = self.next().upper == "DESC"
        nulls_last = descending  # Salesforce's default: nulls first ascending, last descending
        if self.at_kw("NULLS"):
            self.next()
            if not self.at_kw("FIRST", "LAST"):
                raise SoqlError(f"unexpected token: '{self.peek().text}', expected FIRST or LAST")
            nulls_last = self.next().upper == "LAST"
        return OrderItem(path, descending, nulls_last)

    def or_expr(self) -> Any:
        args = [self.and_expr()]
        while self.at_kw("OR"):
            self.next()
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else BoolOp("or", args)

    def and_expr(self) -> Any:
        args = [self.not_expr()]
        while self.at_kw("AND"):
            self.next()
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else BoolOp("and", args)

    def not_expr(self) -> Any:
        if self.at_kw("NOT"):
            self.next()
            return BoolOp("not", [self.not_expr()])
        if self.peek().text == "(":
            self.next()
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        path = self.name("a field name")
        tok = self.next()
        if tok.kind == "op":
            op = "!=" if tok.text == "<>" else tok.text
            return Compare(path, op, self.literal())
        word = tok.upper if tok.kind == "name" else ""
        if word == "LIKE":
            lit = self.literal()
            if lit.kind != "string":
                raise SoqlError("LIKE needs a string literal")
            return Compare(path, "like", lit)
        if word == "IN" or (word == "NOT" and self.at_kw("IN")):
            if word == "NOT":
                self.next()
            self.expect_punct("(")
            if self.at_kw("SELECT"):
                raise SoqlError("semi-join subqueries are not supported by the sandbox")
            values = [self.literal()]
            while self.peek().text == ",":
                self.next()
                values.append(self.literal())
            self.expect_punct(")")
            return Compare(path, "notin" if word == "NOT" else "in", values)
        raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}' after '{path}'")

    def literal(self) -> Literal:
        tok = self.next()
        if tok.kind == "string":
            return Literal("string", _unquote(tok.text), tok.text)
        if tok.kind == "number":
            value = float(tok.text) if "." in tok.text else int(tok.text)
            return Literal("number", value, tok.text)
        if tok.kind == "datetime":
            text = tok.text.replace("Z", "+00:00")
            if re.search(r"[+-]\d{4}$", text):
                text = text[:-2] + ":" + text[-2:]
            try:
                return Literal("datetime", datetime.fromisoformat(text).astimezone(UTC), tok.text)
            except ValueError as exc:
                raise SoqlError(f"invalid datetime literal {tok.text}") from exc
        if tok.kind == "date":
            try:
                return Literal("date", date.fromisoformat(tok.text), tok.text)
            except ValueError as exc:
                raise SoqlError(f"invalid date literal {tok.text}") from exc
        if tok.kind == "name":
            word = tok.upper
            if word == "NULL":
                return Literal("null", None, tok.text)
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", tok.text)
            if word in _DATE_KEYWORDS:
                return Literal("daterange", date_range(word, None, self.now), tok.text)
            if word in _DATE_N_KEYWORDS:
                self.expect_punct(":")
                n = self.integer(word)
                return Literal("daterange", date_range(word, n, self.now), f"{tok.text}:{n}")
        raise SoqlError(f"unexpected token: '{tok.text or 'end of query'}', expected a value")


def parse(soql: str, now: datetime | None = None) -> Query:
    """Parse a SOQL string.

    Args:
        soql: the query text.
        now: the instant relative date literals resolve against (default: the current time).

    Raises:
        SoqlError: MALFORMED_QUERY for anything outside the supported subset.
    """
    if not soql or not soql.strip():
        raise SoqlError("empty query")
    return _Parser(soql, now or datetime.now(UTC)).query()


# ---------------------------------------------------------------- typing and evaluation


def format_datetime(value: datetime) -> str:
    """Salesforce's wire format: 2024-05-01T10:00:00.000+0000 (always UTC here)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """Read a datetime in Salesforce's or ISO format; naive values are taken as UTC."""
    t = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", t):
        t = t[:-2] + ":" + t[-2:]
    value = datetime.fromisoformat(t)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


FieldResolver = Callable[[str], sf_schema.Field]
"""Maps a (possibly dotted) field path to its Field, raising SoqlError(INVALID_FIELD)."""


def resolve_path(sobject: sf_schema.SObject, path: str) -> sf_schema.Field:
    """The Field a dotted path ends at (Owner.Email -> User.Email) or INVALID_FIELD.

    Polymorphic relationships (Owner -> User or Group, Who, What) resolve against the first
    target that has the field, like Salesforce's `Name`-style common fields.
    """
    parts = path.split(".")
    current = [sobject]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found: sf_schema.Field | None = None
        targets: list[sf_schema.SObject] = []
        for obj in current:
            if last:
                found = found or obj.field(part)
            else:
                ref = obj.relationship(part)
                if ref:
                    found = ref
                    targets += [sf_schema.sobject(t) for t in ref.reference_to if sf_schema.sobject(t)]
        if found is None:
            where = current[0].name
            raise SoqlError(
                f"No such column '{part}' on entity '{where}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name.",
                "INVALID_FIELD",
            )
        if last:
            return found
        current = targets
    raise SoqlError(f"invalid field path {path}", "INVALID_FIELD")  # pragma: no cover


_KIND_OK = {
    sf_schema.DATETIME: {"datetime", "daterange", "null"},
    sf_schema.DATE: {"date", "daterange", "null"},
    sf_schema.BOOLEAN: {"boolean", "null"},
    sf_schema.DOUBLE: {"number", "null"},
    sf_schema.CURRENCY: {"number", "null"},
}


def check_types(node: Any, resolve: FieldResolver) -> None:
    """Refuse comparisons Salesforce refuses (a quoted value against a dateTime field...)."""
    if node is None:
        return
    if isinstance(node, BoolOp):
        for arg in node.args:
            check_types(arg, resolve)
        return
    f = resolve(node.field)
    allowed = _KIND_OK.get(f.type, {"string", "null"})
    values = node.value if isinstance(node.value, list) else [node.value]
    for lit in values:
        if lit.kind not in allowed:
            quoted = " and should not be enclosed in quotes" if lit.kind == "string" else ""
            raise SoqlError(
                f"value of filter criterion for field '{node.field}' must be of type {f.type}{quoted}",
                "INVALID_FIELD",
            )
        if lit.kind == "null" and node.op not in ("=", "!=", "in", "notin"):
            raise SoqlError(f"NULL can only be compared with = or != (field '{node.field}')")
    if node.op == "like" and f.type not in (
        sf_schema.STRING,
        sf_schema.EMAIL,
        sf_schema.PICKLIST,
        sf_schema.TEXTAREA,
        sf_schema.ID,
        sf_schema.REFERENCE,
    ):
        raise SoqlError(f"invalid operator on field '{node.field}' of type {f.type}", "INVALID_FIELD")


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _coerce(value: Any, ftype: str) -> Any:
    """A stored value as a comparable Python value for its field type."""
    if value is None:
        return None
    if ftype == sf_schema.DATETIME:
        return parse_datetime(value) if isinstance(value, str) else value
    if ftype == sf_schema.DATE:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if ftype in (sf_schema.DOUBLE, sf_schema.CURRENCY):
        return float(value)
    if ftype == sf_schema.BOOLEAN:
        return bool(value)
    return str(value).casefold()  # SOQL string comparison is case-insensitive


def _lit_value(lit: Literal, ftype: str) -> Any:
    if lit.kind == "string":
        return lit.value.casefold()
    if lit.kind == "number":
        return float(lit.value)
    if lit.kind == "date" and ftype == sf_schema.DATETIME:
        return _midnight(lit.value)
    return lit.value


def _compare_range(op: str, v: Any, rng: DateRange, ftype: str) -> bool:
    if ftype == sf_schema.DATE:
        start, end = rng.start.date(), rng.end.date()
    else:
        start, end = rng.start, rng.end
    if op == "=":
        return start <= v < end
    if op == "!=":
        return not (start <= v < end)
    if op == "<":
        return v < start
    if op == "<=":
        return v < end
    if op == ">":
        return v >= end
    if op == ">=":
        return v >= start
    raise SoqlError(f"operator {op} not supported with {rng.name}")  # pragma: no cover


Getter = Callable[[dict, str], Any]
"""Reads a (possibly dotted) path from a row; returns None when any link is null."""


def compile_where(node: Any, resolve: FieldResolver, get: Getter) -> Callable[[dict], bool]:
    """Turn a WHERE tree into a predicate over rows. Types must have been checked first."""
    if node is None:
        return lambda row: True
    if isinstance(node, BoolOp):
        preds = [compile_where(a, resolve, get) for a in node.args]
        if node.op == "and":
            return lambda row: all(p(row) for p in preds)
        if node.op == "or":
            return lambda row: any(p(row) for p in preds)
        return lambda row: not preds[0](row)
    ftype = resolve(node.field).type
    path, op = node.field, node.op
    if op in ("in", "notin"):
        wanted = {_lit_value(v, ftype) for v in node.value}
        if op == "in":
            return lambda row: _coerce(get(row, path), ftype) in wanted
        return lambda row: _coerce(get(row, path), ftype) not in wanted
    if op == "like":
        rx = _like_regex(node.value.value)
        return lambda row: (v := get(row, path)) is not None and rx.fullmatch(str(v)) is not None
    lit = node.value
    if lit.kind == "null":
        if op == "=":
            return lambda row: get(row, path) is None
        return lambda row: get(row, path) is not None
    if lit.kind == "daterange":
        rng = lit.value

        def in_range(row: dict) -> bool:
            v = _coerce(get(row, path), ftype)
            return v is not None and _compare_range(op, v, rng, ftype)

        return in_range
    target = _lit_value(lit, ftype)
    cmp = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }[op]

    def test(row: dict) -> bool:
        v = _coerce(get(row, path), ftype)
        if v is None:
            return op == "!="  # Salesforce: a null field is != any value
        return cmp(v, target)

    return test


def sort_rows(rows: list[dict], order: list[OrderItem], resolve: FieldResolver, get: Getter) -> list[dict]:
    """Sort by ORDER BY items, applying NULLS FIRST/LAST per item (stable, last key first)."""
    for item in reversed(order):
        ftype = resolve(item.path).type
        nulls = [r for r in rows if get(r, item.path) is None]
        rest = [r for r in rows if get(r, item.path) is not None]
        rest.sort(key=lambda r, p=item.path: _coerce(get(r, p), ftype), reverse=item.descending)
        rows = rest + nulls if item.nulls_last else nulls + rest
    return rows


def modstamp_bounds(node: Any, field_name: str = "SystemModstamp") -> tuple[datetime | None, datetime | None]:
    """A (low, high) range on `field_name` implied by top-level AND conjuncts, for index pre-filtering.

    The bounds are inclusive and may be looser than the WHERE clause; the full predicate is still
    applied to every row, so this only ever narrows the scan.
    """
    low: datetime | None = None
    high: datetime | None = None
    conjuncts = node.args if isinstance(node, BoolOp) and node.op == "and" else [node]
    for c in conjuncts:
        if not isinstance(c, Compare) or c.field.lower() != field_name.lower() or isinstance(c.value, list):
            continue
        lit = c.value
        if lit.kind == "datetime":
            lo, hi = lit.value, lit.value
        elif lit.kind == "date":
            lo, hi = _midnight(lit.value), _midnight(lit.value + timedelta(days=1))
        elif lit.kind == "daterange":
            lo, hi = lit.value.start, lit.value.end
        else:
            continue
        if c.op in (">", ">=", "="):
            low = lo if low is None else max(low, lo)
        if c.op in ("<", "<=", "="):
            high = hi if high is None else min(high, hi)
    return low, high
