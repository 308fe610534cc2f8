"""The Airflow assets the pipelines exchange, declared once for every DAG file.

Imported at DAG-file top level, so it holds constants only (and `airflow.sdk`, already loaded).
"""

from __future__ import annotations

from airflow.sdk import Asset

#: The store's CRM mirror: `crm_sync` emits it when records changed; `sla_monitor` runs on it.
CRM_ASSET = Asset("leadsla://store/crm")


def _crm_changes() -> Asset:
    from airflow.sdk import AssetWatcher

    from leadsla.tasks.change_events import CrmChangeTrigger

    return Asset(
        "leadsla://salesforce/changes",
        watchers=[AssetWatcher(name="salesforce_change_events", trigger=CrmChangeTrigger())],
    )


#: Salesforce Change Data Capture: the listener in the triggerer (`tasks.change_events`) emits it
#: for each batch of changes (its extra's payload: record ids per object, replay ids); crm_sync
#: runs on it as well as every minute.
CRM_CHANGES = _crm_changes()
