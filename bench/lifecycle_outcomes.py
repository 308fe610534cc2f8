"""How the lifecycle semantics change the demo's clock outcomes: the same two-week demo store
evaluated by the engine and policy before the issue "Right about every real lead" (main at
cbb83cb) and by this checkout's.

Builds the demo store as `make run` does (bench/monitor.py's setup: seed the demo org with its
two-week backlog, back-fill the store through the Salesforce stand-in), with a fixed seed and end
instant so the figures repeat. The mirror is read once, with this checkout's `load_frames`; the
old engine runs in a child process with the old checkout's include/ first on its path, on those
frames cut to the columns it knew (the old code refuses a store newer than its schema, so it never
opens one). Both sides use their own include/config/sla_policy.yaml with the demo org's
integration user in `automation_user_ids`, as `make run`'s demo policy does.

Prints one JSON line (logs go to stderr):
  clocks_old / clocks_new             clocks per SLA and state
  changed                             clocks with the same identity (sla, record, start) whose
                                      state differs, as "old -> new": count
  only_old / only_new                 clocks one side has and the other not, per SLA and state
                                      (a re-entry after Recycled -> MQL -> SAL is a new clock now;
                                      mql_acceptance is new)
  escalations_old / escalations_new   breach escalations (reassign + lock) each would have made: a
                                      Lead clock of an SLA that reassigns or locks whose `breach`
                                      checkpoint was reached while it was open
  escalations_dropped / _added        made by the old semantics and not by the new, and the reverse
  escalations_dropped_by_new_state    the dropped ones by the clock's state under the new semantics

    python bench/lifecycle_outcomes.py [OLD_CHECKOUT] [--seed 7] [--end 2026-12-04T16:00:00Z]

OLD_CHECKOUT is a checkout of main before the issue, e.g. a throwaway worktree
(`git worktree add --detach /tmp/old-engine cbb83cb`, removed after with `git worktree remove`).
Without it (as `make bench` runs it) the old include/ is extracted from this repository's commit
cbb83cb with `git archive` into the temp folder, leaving the repository as it was.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: main just before the issue "Right about every real lead" (the old engine and policy).
OLD_COMMIT = "cbb83cb"
#: The demo's last instant: fixed (and in the past, or the data-quality gate refuses the records).
DEFAULT_END = "2026-12-04T16:00:00+00:00"
KEY = ["sla_id", "record_id", "clock_start"]


def demo_policy(include: Path, out: Path) -> Path:
    """That checkout's shipped policy plus the demo org's integration user (as `make run` writes it)."""
    import yaml

    from sandbox.sf_store import make_id

    data = yaml.safe_load((include / "config" / "sla_policy.yaml").read_text(encoding="utf-8"))
    data["automation_user_ids"] = sorted({*data.get("automation_user_ids", []), make_id("005", 0)})
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def evaluate(include: Path, frames_path: Path, now: dt.datetime, out: Path) -> None:
    """Evaluate the pickled frames with the engine and policy of `include` (first on sys.path);
    pickle (clocks, breach escalations, SLAs that reassign or lock) to `out`."""
    sys.path.insert(0, str(include))
    from leadsla.engine import evaluate as evaluate_clocks
    from leadsla.policy import load_policy
    from leadsla.store.mirror import FRAME_COLUMNS

    assert Path(sys.modules["leadsla"].__file__).resolve().is_relative_to(include.resolve())
    frames = pickle.loads(frames_path.read_bytes())
    # Only the columns this version's mirror read (the old engine never saw the v2 columns).
    frames = {name: frames[name][cols] for name, cols in FRAME_COLUMNS.items() if name in frames}
    policy = load_policy(demo_policy(include, out.with_suffix(".policy.yaml")))
    result = evaluate_clocks(
        records=frames["records"],
        field_history=frames["field_history"],
        activities=frames["activities"],
        users=frames["users"],
        policy=policy,
        now=now,
    )
    escalating = {
        s.id for s in policy.slas if s.object == "Lead" and (s.breach.reassign or s.breach.lock_hours)
    }
    cp = result.checkpoints
    breach = cp[(cp["checkpoint"] == "breach") & cp["sla_id"].isin(escalating)]
    # Plain strings: each engine's categoricals have their own categories (the new one more states).
    clocks = result.clocks[[*KEY, "state"]].astype({"sla_id": str, "record_id": str, "state": str})
    breach = breach[KEY].astype({"sla_id": str, "record_id": str}).drop_duplicates()
    out.write_bytes(pickle.dumps((clocks, breach, sorted(escalating))))


def build_store(root: Path, seed: int, end: dt.datetime) -> dict:
    """The demo org (two weeks up to `end`), synced into a fresh store; its mirror's frames."""
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    from leadsla.store import open_store
    from leadsla.store.mirror import load_frames
    from leadsla.tasks import sync
    from sandbox import salesforce_api
    from sandbox.devstack import DEMO_BACKLOG_HOURS
    from sandbox.simulate import run

    run(root / "salesforce", seed=seed, backlog_hours=DEMO_BACKLOG_HOURS, for_hours=0, start=end)
    api = salesforce_api.start(root / "salesforce")
    try:
        os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
        os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
        for group in ("org", "leads"):
            sync.run_group(group)
    finally:
        api.stop()
    engine = open_store()
    try:
        with engine.connect() as conn:
            return load_frames(conn)
    finally:
        engine.dispose()


def _per_sla_state(clocks) -> dict[str, dict[str, int]]:
    counts = clocks.groupby(["sla_id", "state"]).size()
    out: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (sla, state), n in counts.items():
        out[sla][state] = int(n)
    return dict(out)


def compare(old: tuple, new: tuple) -> dict:
    """The figures of the module docstring from both sides' (clocks, escalations, escalating SLAs)."""
    (old_clocks, old_esc, _), (new_clocks, new_esc, _) = old, new
    both = old_clocks.merge(new_clocks, on=KEY, how="outer", suffixes=("_old", "_new"), indicator=True)
    matched = both[both["_merge"] == "both"]
    moved = matched[matched["state_old"] != matched["state_new"]]
    changed = collections.Counter(
        f"{a} -> {b}" for a, b in zip(moved["state_old"], moved["state_new"], strict=True)
    )
    only_old = both[both["_merge"] == "left_only"].rename(columns={"state_old": "state"})
    only_new = both[both["_merge"] == "right_only"].rename(columns={"state_new": "state"})
    esc = old_esc.merge(new_esc, on=KEY, how="outer", indicator=True)
    dropped = esc[esc["_merge"] == "left_only"][KEY].merge(new_clocks, on=KEY, how="left")
    return {
        "clocks_old": _per_sla_state(old_clocks),
        "clocks_new": _per_sla_state(new_clocks),
        "clocks_total": {"old": len(old_clocks), "new": len(new_clocks), "same_identity": len(matched)},
        "changed_total": len(moved),
        "changed": dict(changed.most_common()),
        "changed_by_sla": {k: int(v) for k, v in moved.groupby("sla_id").size().items()},
        "only_old": _per_sla_state(only_old),
        "only_new": _per_sla_state(only_new),
        "escalations_old": len(old_esc),
        "escalations_new": len(new_esc),
        "escalations_dropped": int((esc["_merge"] == "left_only").sum()),
        "escalations_added": int((esc["_merge"] == "right_only").sum()),
        "escalations_dropped_by_new_state": {
            str(k): int(v) for k, v in dropped["state"].fillna("no clock").value_counts().items()
        },
    }


def _extract_old(into: Path) -> Path:
    """OLD_COMMIT's include/ (code and config) from this repository, into `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_COMMIT, "include"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "old", type=Path, nargs="?", help=f"a checkout of main before the issue (default: {OLD_COMMIT}'s)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the demo org's seed (make run's: 7)")
    parser.add_argument("--end", default=DEFAULT_END, help="the demo's last instant (ISO, UTC)")
    parser.add_argument("--evaluate", nargs=3, metavar=("INCLUDE", "FRAMES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(dt.UTC)
    if args.evaluate:  # the child process: one side's engine
        include, frames, out = (Path(p) for p in args.evaluate)
        evaluate(include, frames, end, out)
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="leadsla-lifecycle-bench-"))
    old = args.old.resolve() if args.old else _extract_old(root / "old")
    old_include = old / "include"
    if not (old_include / "leadsla" / "engine.py").is_file():
        parser.error(f"{old} is not a checkout of this project (no include/leadsla/engine.py)")
    sys.path.insert(0, str(ROOT / "include"))
    with contextlib.redirect_stdout(sys.stderr):
        frames = build_store(root, args.seed, end)
    frames_path = root / "frames.pickle"
    frames_path.write_bytes(pickle.dumps(frames))
    sides = {}
    for side, include in (("old", old_include), ("new", ROOT / "include")):
        out = root / f"{side}.pickle"
        subprocess.run(
            [sys.executable, __file__, str(old), "--end", end.isoformat()]
            + ["--evaluate", str(include), str(frames_path), str(out)],
            check=True,
            stdout=sys.stderr,
        )
        sides[side] = pickle.loads(out.read_bytes())
    from sandbox.devstack import DEMO_BACKLOG_HOURS

    days = DEMO_BACKLOG_HOURS / 24
    figures = {"seed": args.seed, "end": end.isoformat(), "days": days, **compare(sides["old"], sides["new"])}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
