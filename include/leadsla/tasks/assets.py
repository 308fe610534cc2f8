"""The Airflow assets the pipelines exchange, declared once for every DAG file.

Imported at DAG-file top level, so it holds constants only (and `airflow.sdk`, already loaded).
"""

from __future__ import annotations

from airflow.sdk import Asset

#: The store's CRM mirror: `crm_sync` emits it when records changed; `sla_monitor` runs on it.
CRM_ASSET = Asset("leadsla://store/crm")
