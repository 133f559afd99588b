# syntax=docker/dockerfile:1
# One image for every component: its entrypoint is `hyperfollow`, the pod's args choose the command
# (operator, worker, discovery, scheduler, api, db upgrade). Multi-stage: build tools and pip's caches stay
# in the first stage; the runtime stage is python slim plus one virtualenv, run as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/hyperfollow
WORKDIR /src
# what `pip install .` needs: the project file, its readme, and every package folder of pyproject.toml
COPY pyproject.toml README.md ./
COPY core/ core/
COPY discovery/ discovery/
COPY workers/ workers/
COPY api/ api/
COPY operator/ operator/
COPY sim/ sim/
COPY local/ local/
COPY bench/ bench/
# a regular (not editable) install; pip compiles the bytecode here, as the runtime filesystem is read-only
RUN /opt/hyperfollow/bin/pip install . \
    && /opt/hyperfollow/bin/hyperfollow --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hyperfollow" \
      org.opencontainers.image.description="Find, track, rank and stream the best Hyperliquid traders"
ENV PATH=/opt/hyperfollow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HYPERFOLLOW_HOME=/tmp/hyperfollow \
    HYPERFOLLOW_LOG_FORMAT=json
RUN groupadd --system --gid 10001 hyperfollow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin hyperfollow
COPY --from=build /opt/hyperfollow /opt/hyperfollow
# the same numeric user the chart's and the operator's pod security contexts ask for
USER 10001:10001
WORKDIR /tmp
# api (HYPERFOLLOW_API_PORT), metrics and health of the other services, kopf's liveness endpoint
EXPOSE 8000 9100 8080
ENTRYPOINT ["hyperfollow"]
CMD ["--help"]
