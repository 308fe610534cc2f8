"""Airflow's local-settings hook (the plugins folder is on Airflow's import path): warm the task
processes' heavy imports in the processes they are forked from (`leadsla.tasks.warm`).

This file is no plugin: plugins/.airflowignore keeps the plugin loader from importing it again.
"""

from __future__ import annotations

import sys

from airflow.configuration import conf

from leadsla.tasks.warm import warm

warm(sys.argv, conf.get("core", "executor", fallback=""))
