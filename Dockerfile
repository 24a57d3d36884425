FROM python:3.11-slim
# The user the processes run as. docker-compose.yml passes ROTATION_UID/ROTATION_GID both here and as
# `user:`: set them to the ids that own ./config (id -u, id -g) when it holds files only their owner
# may read, such as the CA key `rotation ca init` writes with mode 0600.
ARG ROTATION_UID=10001
ARG ROTATION_GID=10001
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rotation ./rotation
COPY workers ./workers
COPY schedules ./schedules
RUN pip install --no-cache-dir . \
    && groupadd --non-unique --gid "$ROTATION_GID" rotation \
    && useradd --non-unique --uid "$ROTATION_UID" --gid "$ROTATION_GID" --home-dir /state --no-create-home \
        --shell /usr/sbin/nologin rotation \
    && mkdir -p /state /sim \
    && chown "$ROTATION_UID:$ROTATION_GID" /state /sim && chmod 0700 /state /sim
COPY deploy/healthcheck.py ./deploy/healthcheck.py
# Numeric, so that runtimes which refuse root can tell; /state and /sim seed the named volumes
# mounted there with this owner.
USER ${ROTATION_UID}:${ROTATION_GID}
ENV ROTATION_STATE_DIR=/state HOME=/state PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT []
