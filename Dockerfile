FROM apache/airflow:3.3.2-python3.11
# Production only: the pinned runtime (requirements.txt) and the `leadsla` package. The sandbox
# (include/sandbox, the demo's and tests' stand-ins) and requirements-dev.txt never come in;
# tests/unit/test_packaging.py checks these lines, .dockerignore keeps them out of the context.
# leadsla.paths finds include/config, include/templates and great_expectations/ here.
ENV LEADSLA_HOME=/opt/airflow
# The pins first, so a code change rebuilds from the package step, not from Airflow's tree.
COPY --chown=airflow:root requirements.txt constraints.txt /opt/leadsla/
RUN pip install --no-cache-dir -r /opt/leadsla/requirements.txt -c /opt/leadsla/constraints.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/leadsla/
COPY --chown=airflow:root include/leadsla /opt/leadsla/include/leadsla
RUN pip install --no-cache-dir --no-deps /opt/leadsla
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root include/config /opt/airflow/include/config
COPY --chown=airflow:root include/templates /opt/airflow/include/templates
COPY --chown=airflow:root great_expectations /opt/airflow/great_expectations
