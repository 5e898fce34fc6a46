# syntax=docker/dockerfile:1
# One slim image for every plant service: the twin's OPC UA server, the edge gateway, the
# historian, the controller and the `plant` tools (fault injection, health checks, secrets).
# docker-compose.yml picks the service with `command:`; `plant health <service>` is its
# healthcheck. Dependencies are pinned by deploy/requirements.lock.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/requirements.lock deploy/requirements.lock
COPY core core
COPY apps apps
COPY twin twin
COPY opcua_server opcua_server
COPY bridge bridge
COPY controller controller
COPY dashboards dashboards
# Wheels for the project and its pinned dependencies; the runtime stage installs only these.
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c deploy/requirements.lock .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels pcmm-twin \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin plant \
 && mkdir -p /data /run/secrets \
 && chown plant:plant /data
# /data holds each service's spool, OPC UA certificates and state (a named volume per service;
# Docker copies this folder's owner into a new volume, so the plant user can write it).
VOLUME ["/data"]
WORKDIR /data
USER plant
# PLANT_<NAME>__FILE=/run/secrets/... -> PLANT_<NAME>, then exec the command.
ENTRYPOINT ["python", "-m", "apps.envfiles"]
CMD ["plant", "--help"]
