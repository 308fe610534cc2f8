"""Whom routing's alerts reach: the policy's `routing.unowned.notify` roles, on its channels."""

from __future__ import annotations

from collections.abc import Iterable

from leadsla.decisions.recipients import Directory


def addresses(
    directory: Directory, roles: Iterable[str], channels: Iterable[str], team: str | None
) -> tuple[tuple[str, str], ...]:
    """(channel, address) for each role of a lead of `team` (a policy team id, or None: only the
    roles that need no team resolve), each address once."""
    found: list[tuple[str, str]] = []
    for role in roles:
        for person in directory.resolve(role, None, team, team):
            for channel in channels:
                address = person.address(channel)
                if address and (channel, address) not in found:
                    found.append((channel, address))
    return tuple(found)
