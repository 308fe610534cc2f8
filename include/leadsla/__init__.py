"""Lead SLA Monitor: the domain library.

Everything here runs inside Airflow tasks, the CLI and tests alike. Only the modules that talk to
the outside world (crm/, notify/) import Airflow provider hooks, and only inside functions; the
engine, calendar, policy and store never import Airflow.
"""

from __future__ import annotations

__version__ = "0.1.0"
