FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY meterflow meterflow
COPY ingest ingest
COPY storage storage
COPY partitions partitions
RUN pip install --no-cache-dir .
VOLUME /data
ENTRYPOINT ["meterflow"]
CMD ["run", "--db", "sqlite:////data/meterflow.db"]
