"""Decisions: what to send, roll up, digest and escalate, as plain data (a `plan.Plan`).

Every function here is pure: it takes an evaluation, the policy and the recipients' state (a
snapshot of the outbox read by `leadsla.notify.outbox`) and returns data. Nothing here opens a
connection, sends, or reads the wall clock; `leadsla.notify.outbox.apply` writes a plan, in one
transaction, and is the only code that inserts or changes outbox rows.
"""
