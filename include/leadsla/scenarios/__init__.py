"""The go-live scenarios: seed 002's QA checklist and the lead lifecycle paths, as runnable cases.

Each scenario tells a small story about a lead (`story`) under the policy it is given, works out
from that policy and its calendars what should happen (`terms`), runs the story through the
engine (`leadsla.engine.evaluate`) and, where it matters who is told, the monitor's decision step
(`leadsla.decisions.monitor.decide`), and says pass, fail or n/a (`run.run_scenarios`).
`leadsla qa` prints the table for a customer's policy; tests/scenarios/ runs them against both
shipped policies and, for some, through the `sla_monitor` DAG.

Pure: never imports Airflow, the store or the network, and never reads the wall clock.
"""
