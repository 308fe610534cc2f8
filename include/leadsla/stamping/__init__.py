"""SLA stamping: each watched Lead's clock written on the record, where reps and managers work.

`fields` says which SLA fields can be stamped (the mapping names them and the org's describe()
says they exist, are writable and can hold the values; a field that cannot is one notice to data
engineering and its stamping stops). `stamp` reads the clocks and the store's copy of the records,
asks `leadsla.decisions.stamping` what changed, writes it through the CRM write-back (200 per
composite call, conditional on the sync's view), audits it, and keeps inside its share of the
daily API budget. It never writes an owner, a status or a lock, so it cannot wake the lock keeper,
and never reads the wall clock for a decision (only for API-budget bookkeeping).
"""
