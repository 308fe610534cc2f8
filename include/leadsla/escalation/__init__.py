"""Escalation: breach actions performed in the CRM, and the 24-hour lock kept.

`breach` claims the breach actions the monitor queued (outbox channel ``crm``) and performs them
through the CRM write-back; `locks` keeps a breached lead with its lock holder against automated
reassignments. Both audit every outcome; neither sends Slack or e-mail (a lock holder's notice
goes through the outbox) or reads the wall clock.
"""
