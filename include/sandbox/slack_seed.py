"""The Slack stand-in's seed for `make run`: the demo org's people and the channels alerts name.

Without it the stand-in knows nobody, so a demo rep cannot be DMed (``users_not_found``) and a VP
or team channel answers ``channel_not_found``. `write_seed(slack_dir)` writes the stand-in's seed
files - ``users.json`` (every demo org user with an e-mail: VPs, managers, reps) and
``channels.json`` (the policy's team channels and contacts' Slack targets, and the data-quality
and health channels of quality.yaml) - which `sandbox.slack_api` loads at start.

The people come from the demo org's own store when it exists (``$LEADSLA_DEMO_ORG_DB``, else
``<sandbox dir>/salesforce/org.sqlite3``); otherwise from a throwaway demo org seeded with the
same seed in a temp folder: `sandbox.simulate.DemoOrg` draws names from a seeded Faker, so the
same seed gives the same people. Sandbox only: never used by production code paths.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

DEMO_SEED = 7


def _org_users(store: Any) -> list[dict[str, Any]]:
    people = []
    for row in store.scan("User"):
        email = (row.get("Email") or "").strip()
        if not email or not row.get("IsActive", True):
            continue
        first, last = row.get("FirstName") or "", row.get("LastName") or ""
        people.append(
            {
                "email": email,
                "name": email.split("@")[0],
                "real_name": f"{first} {last}".strip() or email,
                "tz": row.get("TimeZoneSidKey") or "America/New_York",
            }
        )
    return people


def demo_users(org_db: Path | None = None, seed: int = DEMO_SEED, desk: bool = False) -> list[dict[str, Any]]:
    """Slack users (email, name, real_name, tz) for every active demo org user with an e-mail (an org
    not seeded yet: seeded here alike, with the demo-request desk when `desk`)."""
    from sandbox.sf_store import OrgStore

    if org_db is not None and org_db.exists():
        store = OrgStore(org_db)
        try:
            return _org_users(store)
        finally:
            store.close()
    from sandbox.simulate import DemoOrg

    with tempfile.TemporaryDirectory(prefix="leadsla_demo_users_") as tmp:
        store = OrgStore(Path(tmp) / "org.sqlite3")
        try:
            DemoOrg(store, seed=seed, desk=desk)
            return _org_users(store)
        finally:
            store.close()


def policy_channels(policy: Any, quality: dict[str, Any] | None = None) -> dict[str, str]:
    """Channel id -> name for every channel the policy (and quality.yaml) may post to."""
    channels: dict[str, str] = {}
    targets = [t.slack_channel for t in policy.teams.values()]
    targets += [c.slack for c in policy.contacts.values()]
    quality = quality or {}
    targets += [
        (quality.get("incident") or {}).get("slack_channel"),
        (quality.get("health") or {}).get("revops_slack_channel"),
    ]
    for target in targets:
        if target and "@" not in target:
            channels[target] = target.lstrip("#")
    return channels


def write_seed(
    slack_dir: Path, *, org_db: Path | None = None, seed: int = DEMO_SEED, desk: bool = False
) -> dict[str, int]:
    """Write users.json and channels.json for the stand-in into `slack_dir`; returns counts."""
    import yaml

    from leadsla.paths import config_dir
    from leadsla.policy import load_policy

    policy = load_policy()
    quality_path = config_dir() / "quality.yaml"
    quality = yaml.safe_load(quality_path.read_text(encoding="utf-8")) if quality_path.exists() else {}
    users = demo_users(org_db, seed, desk)
    channels = policy_channels(policy, quality)
    slack_dir.mkdir(parents=True, exist_ok=True)
    (slack_dir / "users.json").write_text(json.dumps(users, indent=1), encoding="utf-8")
    (slack_dir / "channels.json").write_text(json.dumps(channels, indent=1), encoding="utf-8")
    return {"users": len(users), "channels": len(channels)}
