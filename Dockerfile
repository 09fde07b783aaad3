# syntax=docker/dockerfile:1
# The Reconnect worker image: `reconnect worker` by default, `reconnect topics create` for the
# initialiser. Runtime dependencies only (no dev extras), as a non-root user.

# Pinned to a patch release and Debian suite so rebuilds are reproducible; bump deliberately.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: install the project into a self-contained virtualenv ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# .dockerignore keeps the context to what a wheel build needs (no .git, .venv, tests, ops, .env).
COPY . .
# `.` and not `.[dev]`: test tools and the embedded broker stay out of the production image.
RUN pip install --upgrade pip \
 && pip install .

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    # Container defaults; docker-compose.yml sets them too. The web server listens on loopback
    # unless the deployment says otherwise (compose sets RECONNECT_WEB_BIND for Prometheus), and
    # Faust needs a writable data directory.
    RECONNECT_WEB_PORT=6066 \
    RECONNECT_DATA_DIR=/var/lib/reconnect/faust

# A fixed, unprivileged uid/gid that owns nothing but the worker's data directory.
RUN groupadd --system --gid 10001 reconnect \
 && useradd --system --uid 10001 --gid reconnect --home-dir /var/lib/reconnect \
      --no-create-home --shell /usr/sbin/nologin reconnect \
 && mkdir -p /var/lib/reconnect/faust \
 && chown -R reconnect:reconnect /var/lib/reconnect

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/reconnect
USER 10001:10001

# Faust web server: /metrics, /livez, /readyz.
EXPOSE 6066

ENTRYPOINT ["reconnect"]
CMD ["worker"]
