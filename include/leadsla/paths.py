"""Where the project's files live: the SLA policy and field mapping (include/config/), templates
(include/templates/) and the Great Expectations project.

In a checkout (editable install) they sit beside the package; in a deployment image the package
is installed into site-packages and the files are copied under $LEADSLA_HOME (the Dockerfile sets
/opt/airflow). Never creates or writes anything.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """$LEADSLA_HOME when set, else the checkout this package was loaded from."""
    return Path(os.environ["LEADSLA_HOME"]) if os.environ.get("LEADSLA_HOME") else _CHECKOUT


def config_dir() -> Path:
    """include/config: sla_policy.yaml, crm_fields.yaml."""
    return project_root() / "include" / "config"


def templates_dir() -> Path:
    """include/templates: Jinja2 templates for email and Slack."""
    return project_root() / "include" / "templates"


def great_expectations_dir() -> Path:
    """The Great Expectations file project (suites as files)."""
    return project_root() / "great_expectations"
