FROM apache/airflow:3.3.2-python3.11
# leadsla.paths finds include/config, include/templates and great_expectations/ here.
ENV LEADSLA_HOME=/opt/airflow
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md /opt/leadsla/
COPY --chown=airflow:root include /opt/leadsla/include
RUN pip install --no-cache-dir -r /opt/leadsla/requirements.txt -c /opt/leadsla/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/leadsla
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root include/config /opt/airflow/include/config
COPY --chown=airflow:root include/templates /opt/airflow/include/templates
COPY --chown=airflow:root great_expectations /opt/airflow/great_expectations
