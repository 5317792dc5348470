# Image for docker-compose.yaml: the official Airflow image plus this project.
# ./dev runs the same code from .venv; the versions pinned in requirements.txt are the same.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/market-data/requirements.txt
RUN pip install --no-cache-dir -r /opt/market-data/requirements.txt
COPY --chown=airflow:root . /opt/market-data
RUN pip install --no-cache-dir --no-deps -e /opt/market-data
WORKDIR /opt/market-data
