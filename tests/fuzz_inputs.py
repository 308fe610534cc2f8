"""Fuzz cases for the `leadsla` command and the configuration loaders, and how one is judged.

A case is bad input as a person could give it: a byte string, a random YAML tree, or a shipped
configuration file with a few random mutations (`hours: {fri: 9}`, a key deleted, a list where a
mapping was, a date in year 9999...), handed to a loader or written to a file that a CLI command
is pointed at; or odd argument values (`--duration 999999999d`, `--start 9999-12-31T23:59+14:00`,
`--period 2026-W99`, a store URL with `@` in its password, a store file that is not a database).

`outcome(case)` runs it and says what went wrong, or None when it ended as the project promises:
the loader returned or raised one of the project's own errors (`LeadSlaError`) with a one-line
message; the command returned 0 or 2 (2: with exactly one `leadsla: error:` line), or argparse
refused the arguments (its usage and error, exit 2). Anything else - another exception, a
multi-line message, a hang past `CASE_SECONDS` - is a failure.

Used by tests/unit/test_fuzz_bad_input.py (a few hundred seeded cases) and bench/fuzz.py (20,000+).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import io
import random
import signal
import string
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from leadsla.errors import LeadSlaError
from leadsla.paths import config_dir

#: A case taking longer than this is a hang.
CASE_SECONDS = 20
#: Each configuration role and its shipped file.
ROLE_FILES = {
    "lifecycle": "lifecycle.yaml",
    "policy": "sla_policy.yaml",
    "mapping": "crm_fields.yaml",
    "quality": "quality.yaml",
    "reports": "reports.yaml",
}
#: The one go-live scenario `leadsla qa` runs per case (all of them take a second per policy).
QA_SCENARIO = "holiday"


def shipped_tree(role: str) -> Any:
    """The shipped file of a role as a YAML tree (anchors expanded)."""
    return yaml.safe_load((config_dir() / ROLE_FILES[role]).read_text(encoding="utf-8"))


SHIPPED = {role: shipped_tree(role) for role in ROLE_FILES}


def _keys(tree: Any) -> set[str]:
    if isinstance(tree, dict):
        return {str(k) for k in tree} | {key for value in tree.values() for key in _keys(value)}
    if isinstance(tree, list):
        return {key for value in tree for key in _keys(value)}
    return set()


#: Every key the shipped files use: random trees and inserted keys name real ones half the time.
KNOWN_KEYS = sorted(set().union(*(_keys(tree) for tree in SHIPPED.values())))

#: Scalars that have broken parsers before, or could.
NASTY_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    9,
    10**30,
    -(10**30),
    0.5,
    -0.0,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    " ",
    "0",
    "-1",
    "9",
    "09:00",
    "9-17",
    "09:00-",
    "17:00-09:00",
    "00:00-24:00",
    "24:00-25:00",
    "09:00-17:00",
    "4h",
    "0h",
    "-4h",
    "1h30m",
    "999999999d",
    "50%",
    "150%",
    "-10%",
    "target + 1m",
    "2h elapsed",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "2026-11-01T00:00:00Z",
    dt.date(1, 1, 1),
    dt.date(9999, 12, 31),
    dt.datetime(9999, 12, 31, 23, 59),
    "America/Nowhere",
    "../../etc/hosts",
    "/",
    "x" * 300,
    "🙂",
    "%",
    "*",
    "<<",
    "\t",
    "0 8 * * 1",
    "61 25 * * 9",
    "owner",
    "queue:",
    "channel:",
    "sales_touch",
    "Lead",
    "Status",
    "SAL",
    [],
    {},
    [None],
    {"": None},
]

scalars = st.one_of(
    st.sampled_from(NASTY_SCALARS),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.booleans(),
    st.none(),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10), st.integers(-3, 3))
#: Random YAML trees, their keys often the configuration's own.
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A value for a mutation: a nasty scalar, a random one, or a small list or mapping of them."""
    roll = rng.random()
    if roll < 0.45:
        return copy.deepcopy(rng.choice(NASTY_SCALARS))
    if roll < 0.6:
        return rng.choice([rng.randint(-100, 100), rng.uniform(-1e6, 1e6), 10 ** rng.randint(0, 40)])
    if roll < 0.75:
        alphabet = string.printable + "äß€🙂\u200d"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
    if depth >= 2 or roll < 0.85:
        return rng.choice(KNOWN_KEYS)
    if roll < 0.93:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KNOWN_KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value in `tree`, the root's children included."""
    found: list[tuple[Any, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            found.append((node, key))
            stack.append(value)
    return found


def mutate(tree: Any, rng: random.Random, mutations: int) -> Any:
    """A copy of `tree` with `mutations` random edits: a value replaced (by a nasty one, or by
    another part of the tree: the right shape in the wrong place), deleted, wrapped in a list,
    turned into text, or a key added."""
    tree = copy.deepcopy(tree)
    for _ in range(mutations):
        slots = _slots(tree)
        if not slots:
            return random_value(rng)
        parent, key = rng.choice(slots)
        roll = rng.random()
        if roll < 0.4:
            parent[key] = random_value(rng)
        elif roll < 0.55:
            del parent[key]
        elif roll < 0.65:
            parent[key] = [parent[key]]
        elif roll < 0.72:
            parent[key] = str(parent[key])
        elif roll < 0.85 and isinstance(parent[key], dict):
            parent[key][rng.choice(KNOWN_KEYS)] = random_value(rng)
        else:
            other, other_key = rng.choice(slots)
            parent[key] = copy.deepcopy(other[other_key])
    return tree


def dump(tree: Any) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False).encode("utf-8")


def mutated(role: str, rng: random.Random) -> bytes:
    """The role's shipped file with one to four mutations, as YAML bytes."""
    return dump(mutate(SHIPPED[role], rng, rng.choice([1, 1, 1, 2, 3, 4])))


def contents(role: str) -> st.SearchStrategy[bytes]:
    """What a file given for `role` holds: mostly the shipped file mutated, else bytes or a tree."""
    return st.one_of(
        st.builds(mutated, st.just(role), st.randoms(use_true_random=False)),
        st.builds(mutated, st.just(role), st.randoms(use_true_random=False)),
        st.builds(mutated, st.sampled_from(sorted(ROLE_FILES)), st.randoms(use_true_random=False)),
        st.binary(max_size=300),
        trees.map(dump),
    )


#: Argument text a shell can pass (no NUL), plus values near the edges.
def arg(*near: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(near), st.text(st.characters(blacklist_characters="\x00"), max_size=24))


DURATIONS = (
    "4h",
    "0h",
    "-5m",
    "1h30m",
    "999999999999d",
    "10000000d",
    "99999999999999999999999h",
    "1e400h",
    "nan",
    "4x",
    "1h30",
    " ",
)
STARTS = (
    "2026-11-20T14:00-05:00",
    "2026-11-20T14:00",
    "2026-11-20T14:00Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-12:00",
    "2026-02-30T10:00Z",
    "Z",
)
CALENDARS = ("us_east", "uk", "apac", "24x7", "owner", "", "nope")
DATES = ("2026-11-01", "0001-01-01", "9999-12-31T23:59:59", "2026-11-01T00:00:00+14:00", "2026-13-01", "")
PERIODS = (
    "2026-W53",
    "2026-W99",
    "0000-W01",
    "9999-Q4",
    "2026-Q5",
    "2026-13",
    "2026-00",
    "W46",
    "",
    "2026-W",
)
#: Where a command is told to write: fine, a folder, a file, a folder that cannot be made.
OUTS = ("{out}", "{folder}", "{plainfile}", "{plainfile}/x.csv", "/proc/leadsla/x.csv")
STORE_URL_PARTS = ("leads", "p@ss", "p%40ss", "a:b", "s3cr@t/", "?x=1", "#", "@", ":", "")


@dataclass(frozen=True)
class Case:
    """One fuzz input: `target` names what runs; `files` are written under the case's folder
    (their names replace `{name}` in `argv`); `text` is a loader's or URL's input."""

    target: str
    argv: tuple[str, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints the failing case
        shown = {name: content[:200] for name, content in self.files.items()}
        return f"Case({self.target!r}, argv={self.argv!r}, files={shown!r})"


def _file_case(target: str, role: str, argv: tuple[str, ...] = ()) -> st.SearchStrategy[Case]:
    return contents(role).map(lambda content: Case(target, argv, {"input": content}))


def cases() -> st.SearchStrategy[Case]:
    """Every kind of case, each target about equally often (the slow `report` build less)."""
    loaders = [_file_case(f"load {role}", role) for role in ROLE_FILES] + [
        _file_case("load schedule", "reports")
    ]
    commands = [
        _file_case("cli policy check", "policy", ("policy", "check", "{input}")),
        _file_case("cli qa", "policy", ("qa", "--policy", "{input}", "--scenario", QA_SCENARIO)),
        st.sampled_from(sorted(ROLE_FILES)).flatmap(
            lambda role: _file_case("cli config check", role, ("config", "check", f"--{role}", "{input}"))
        ),
        st.builds(
            lambda calendar, start, duration: Case(
                "cli deadline", ("deadline", "--calendar", calendar, "--start", start, "--duration", duration)
            ),
            arg(*CALENDARS),
            arg(*STARTS),
            arg(*DURATIONS),
        ),
        _file_case(
            "cli deadline --policy",
            "policy",
            (
                "deadline",
                "--calendar",
                "us_east",
                "--start",
                "2026-11-20T14:00Z",
                "--duration",
                "4h",
                "--policy",
                "{input}",
            ),
        ),
        st.binary(max_size=300).map(
            lambda b: Case("cli store", ("store", "--url", "sqlite:///{input}"), {"input": b})
        ),
        st.builds(
            lambda start, end, out: Case(
                "cli audit export",
                ("audit", "export", "--from", start, "--to", end, "--out", out, "--store", "{store}"),
            ),
            arg(*DATES),
            arg(*DATES),
            st.sampled_from(OUTS),
        ),
        st.builds(
            lambda record, content: Case(
                "cli audit record",
                ("audit", "--record", record, "--store", "sqlite:///{input}"),
                {"input": content},
            ),
            arg("00Q1", ""),
            st.binary(max_size=200),
        ),
        st.builds(
            lambda content: Case("cli validate-leads", ("validate-leads", "{input}"), {"input": content}),
            st.one_of(
                st.binary(max_size=300),
                st.text(max_size=200).map(lambda t: ("Id,Status,CreatedDate,OwnerId\n" + t).encode()),
            ),
        ),
        st.builds(
            lambda name, period, at, out: Case(
                "cli report",
                ("report", name, "--period", period, "--at", at, "--out", out, "--store", "{store}"),
            ),
            st.sampled_from(["weekly", "feedback", "monthly", "quarterly"]),
            st.one_of(st.sampled_from(PERIODS), st.text(max_size=10)),
            arg(*STARTS),
            st.sampled_from(["{outdir}", *OUTS]),
        ),
        st.builds(
            lambda scheme, parts: Case("store url", (f"{scheme}://{''.join(parts)}@127.0.0.1:1/leadsla",)),
            st.sampled_from(["postgresql", "postgresql+psycopg", "mysql", "", "http", "postgresql+nope"]),
            st.lists(
                st.one_of(st.sampled_from(STORE_URL_PARTS), st.text(string.printable, max_size=6)), max_size=4
            ),
        ),
    ]
    return st.one_of(*loaders, *commands)


class Hang(Exception):
    """A case ran past CASE_SECONDS."""


def _alarm(_signum, _frame) -> None:
    raise Hang(f"no answer within {CASE_SECONDS} s")


@functools.cache
def _loader(target: str):
    from leadsla.crm import mapping
    from leadsla.lifecycle import load_lifecycle
    from leadsla.policy import load_policy
    from leadsla.quality.rules import load as load_quality
    from leadsla.reports.config import load_report_config
    from leadsla.reports.schedule import report_schedule

    lifecycle = load_lifecycle()
    return {
        "load lifecycle": load_lifecycle,
        "load policy": lambda path: load_policy(path, lifecycle=lifecycle),
        "load mapping": mapping.load,
        "load quality": lambda path: load_quality(path, lifecycle=lifecycle),
        "load reports": load_report_config,
        "load schedule": lambda path: report_schedule("weekly", path),
    }[target]


def outcome(case: Case, folder: Path) -> str | None:
    """Run `case` with its files in `folder` (reused between cases); None when it ended as
    promised, else what went wrong (one line)."""
    for name, content in case.files.items():
        (folder / name).write_bytes(content)
    paths = {name: str(folder / name) for name in case.files}
    (folder / "plain.txt").write_text("a file, not a folder\n")
    paths.update(
        out=str(folder / "export.csv"),
        outdir=str(folder / "report"),
        store=_store(folder),
        folder=str(folder),
        plainfile=str(folder / "plain.txt"),
    )
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        return _judge(case, paths)
    except Hang as exc:
        return f"{case.target}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _judge(case: Case, paths: dict[str, str]) -> str | None:
    if case.target.startswith("load "):
        try:
            _loader(case.target)(paths["input"])
        except LeadSlaError as exc:
            return (
                None if "\n" not in str(exc) else f"{case.target}: a message of several lines: {exc!s:.300}"
            )
        except Hang:
            raise
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a failure
            return f"{case.target}: {type(exc).__name__}: {_first_line(exc)}"
        return None
    if case.target == "store url":
        from leadsla.store.connection import resolve_url

        try:
            resolve_url(case.argv[0])
        except LeadSlaError as exc:
            return None if "\n" not in str(exc) else f"store url: a message of several lines: {exc!s:.300}"
        except Exception as exc:  # noqa: BLE001
            return f"store url {case.argv[0]!r}: {type(exc).__name__}: {_first_line(exc)}"
        return None
    argv = list(case.argv)
    for placeholder, value in paths.items():
        argv = [part.replace("{" + placeholder + "}", value) for part in argv]
    return _command(case, argv)


def _command(case: Case, argv: list[str]) -> str | None:
    from leadsla.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # argparse refused an argument: its usage and error, exit 2
        return None if exc.code == 2 else f"{case.target}: SystemExit({exc.code})"
    except Hang:
        raise
    except Exception as exc:  # noqa: BLE001
        return f"{case.target} {argv!r}: {type(exc).__name__}: {_first_line(exc)}"
    if code == 0:
        return None
    errors = err.getvalue().splitlines()
    if code == 2 and (not errors or (len(errors) == 1 and errors[0].startswith("leadsla: error: "))):
        return None  # `config check` and `qa` say their problems on stdout and exit 2
    return f"{case.target} {argv!r}: exit {code}, stderr {err.getvalue()[:300]!r}"


def _first_line(exc: BaseException) -> str:
    """The exception's first line, and where in leadsla it was raised (`policy.py:123`)."""
    text = str(exc).strip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/leadsla/" in f.filename]
    where = f" [{frames[-1].filename.split('/leadsla/')[-1]}:{frames[-1].lineno}]" if frames else ""
    return (text.splitlines()[0][:200] if text else "") + where


def _store(folder: Path) -> str:
    """A real, empty store in `folder` (created once) for the commands that read one."""
    path = folder / "store.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        from leadsla.store import open_store

        open_store(url).dispose()
    return url
