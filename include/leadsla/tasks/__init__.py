"""Task entry points: what a DAG's `@task` calls, one module per pipeline.

This is the thin layer on top: each entry point opens the store, calls the domain packages and
returns a small JSON summary for XCom. It is the only package that reads the Airflow task
context; no other package of `leadsla` imports it (an import-linter contract checks this).
"""
