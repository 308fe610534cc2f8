"""Escalation: breach actions performed in the CRM, and the 24-hour lock kept.

`breach` claims the breach actions the monitor queued (outbox channel ``crm``) and performs them
through the CRM write-back; `locks` keeps a breached lead with its lock holder against automated
reassignments; `own_writes` is how either recognises its own write after a crash (the action id
each write carries on the lead). Both audit every outcome; neither sends Slack or e-mail (a lock
holder's notice goes through the outbox) or reads the wall clock.
"""
