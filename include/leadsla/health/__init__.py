"""Self-diagnosis of the SLA system's known failure modes (the seeds' troubleshooting guide).

One small module per check family; each exposes `check(conn, now, policy, settings)` returning
`Finding`s (severity, summary, affected ids, how to fix). `run.run_health` runs them all, stores
the findings (`health_findings`) and queues ONE RevOps digest per run (Slack + email). Checks
read the store and the policy only; they never change CRM data or clocks.
"""
