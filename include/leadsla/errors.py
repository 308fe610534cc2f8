"""Errors a person can act on: each says what was wrong, where, and how to fix it.

The CLI prints them as one line instead of a traceback; tasks let them fail the task with the
same message in the log.
"""

from __future__ import annotations


class LeadSlaError(Exception):
    """Base class of every error whose message is written for a person."""


class StoreConfigError(LeadSlaError):
    """The store's URL or location is missing, malformed or unusable."""
