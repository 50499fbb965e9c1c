# syntax=docker/dockerfile:1
# One image for every service: `docker run IMAGE run|migrate|ingest|process|gateway`.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# Only the tickpipe wheel: its dependencies are binary wheels the runtime stage installs directly.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 tickpipe \
    && useradd --system --uid 10001 --gid tickpipe --home-dir /app --shell /usr/sbin/nologin tickpipe \
    && install -d -o tickpipe -g tickpipe /app
COPY --from=build /wheels/ /tmp/wheels/
# The versions of constraints.txt (scripts/lock), so that a rebuild installs the same packages.
COPY constraints.txt /tmp/constraints.txt
# `set --` expands the wheel's file name; `[otlp]` after a glob would be read as a character class.
RUN set -- /tmp/wheels/tickpipe-*.whl \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt "$1[otlp]" \
    && rm -rf /tmp/wheels /tmp/constraints.txt

WORKDIR /app
# Listen on every interface of the container; TICKPIPE_HEALTH_PORT is the port of /healthz
# (gateway and `run`: TICKPIPE_HTTP_PORT; ingest and process: TICKPIPE_METRICS_PORT).
ENV TICKPIPE_HTTP_HOST=0.0.0.0 \
    TICKPIPE_HTTP_PORT=8000 \
    TICKPIPE_HEALTH_PORT=8000 \
    TICKPIPE_LOG_FORMAT=json
USER tickpipe
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TICKPIPE_HEALTH_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["tickpipe"]
CMD ["run"]
