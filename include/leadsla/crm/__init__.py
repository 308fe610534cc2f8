"""The CRM side of the store: field mapping, SOQL, the Salesforce client, sync cycles and write-back.

Everything here runs inside tasks or the CLI and never imports Airflow at module level: the
Salesforce hook is imported inside `salesforce.SalesforceClient` only.
"""

from __future__ import annotations
