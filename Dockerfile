FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rotation ./rotation
COPY workers ./workers
COPY schedules ./schedules
RUN pip install --no-cache-dir . && useradd --system --home /app rotation && mkdir -p /state && chown rotation /state
USER rotation
ENV ROTATION_STATE_DIR=/state
ENTRYPOINT []
