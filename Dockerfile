# syntax=docker/dockerfile:1
# One slim image for every plant service: the twin's OPC UA server, the edge gateway, the
# historian, the controller and the `plant` tools (fault injection, health checks, secrets).
# docker-compose.yml picks the service with `command:`; `plant health <service>` is its
# healthcheck. Dependencies are pinned by deploy/requirements.lock.

FROM python:3.11.11-slim-bookworm AS build
# A C compiler for mypyc, which compiles the closed loop's hot modules (setup.py says which and
# why); in this stage only: the runtime stage takes the wheels, not the compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY deploy/requirements.lock deploy/requirements.lock
COPY core core
COPY apps apps
COPY twin twin
COPY opcua_server opcua_server
COPY bridge bridge
COPY controller controller
COPY dashboards dashboards
# Wheels for the project (compiled: PLANT_COMPILE=1) and its pinned dependencies; the runtime
# stage installs only these.
RUN PLANT_COMPILE=1 pip wheel --no-cache-dir --wheel-dir /wheels -c deploy/requirements.lock .

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
