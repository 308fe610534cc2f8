"""Local stand-ins that speak the real protocols (Salesforce REST, Slack Web API, SMTP), for the
demo and the tests. Production code reaches them only through connection values."""

from __future__ import annotations
