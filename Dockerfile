# collector: the Prometheus-compatible scraping agent, as a container image.
#
# Two stages from the same base: the builder makes a virtualenv at /opt/collector holding the
# project's wheel (with its C extension, collector._native, compiled there) and its
# dependencies; the final stage copies only that venv, so it has no compiler. BASE_IMAGE may be
# the official python:3.11-slim (default) or a Debian base whose interpreter is `python3` (see
# scripts/base-image.sh), so every step calls `python3` / the venv's own pip, never `python`.
#
# The image runs as uid/gid 65532 and writes only to /var/lib/collector (the disk queue; mount a
# volume there) and /tmp, so it works with readOnlyRootFilesystem: true.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# A C compiler and the Python headers for collector/_native*.c, in this stage only. The official
# python:3.11-slim has the headers of its own /usr/local Python but no compiler; a Debian base
# (scripts/base-image.sh) runs Debian's python3, whose headers are python3-dev: asked for only
# when Python.h is missing, so a slim build does not pull in a second Python. libc6-dev is named
# because gcc only recommends it. Versions are not pinned: they come with the base's release.
# hadolint ignore=DL3008
RUN set -eu; \
    set -- gcc libc6-dev; \
    if ! python3 -c 'import os, sysconfig; p = sysconfig.get_paths()["include"]; raise SystemExit(not os.path.exists(os.path.join(p, "Python.h")))'; then \
        set -- "$@" python3-dev; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; \
    rm -rf /var/lib/apt/lists/*

# The venv first, so its layer survives source changes.
RUN python3 -m venv /opt/collector

COPY pyproject.toml setup.py README.md ./
COPY collector ./collector

# Build the wheel, then install it (and only its runtime dependencies) into the venv. pip
# byte-compiles what it installs, so nothing is written under /opt at run time; pip itself is
# not needed there. A build behind a TLS-intercepting proxy passes the proxy's CA bundle as the
# build secret `pip-ca` (scripts/build-image.sh does); it is mounted for this step only and
# never stored in a layer. The extension is optional to setuptools (a machine without a
# compiler still installs); here the compiler is installed above, so a wheel without it is a
# broken build and the import check fails it (-I: not the source tree in /src).
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/collector/bin/python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/collector/bin/python3 -m pip install --no-cache-dir /wheels/*.whl \
    && /opt/collector/bin/python3 -m pip uninstall --yes pip \
    && /opt/collector/bin/python3 -I -c 'import collector._native'


FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="collector" \
      org.opencontainers.image.description="Prometheus-compatible scraping agent: discovery, scrape, relabel, remote write, no TSDB" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.documentation="deploy/README.md"

# A fixed non-root user; the same numbers are in the Kubernetes securityContext.
RUN groupadd --gid 65532 collector \
    && useradd --uid 65532 --gid 65532 --home-dir /var/lib/collector \
       --no-create-home --shell /usr/sbin/nologin collector \
    && mkdir -p /etc/collector /var/lib/collector \
    && chown 65532:65532 /var/lib/collector

COPY --from=builder /opt/collector /opt/collector

ENV PATH=/opt/collector/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/collector

# The disk queue lives here: mount an emptyDir or a PersistentVolume on it.
WORKDIR /var/lib/collector
VOLUME ["/var/lib/collector"]

USER 65532:65532

EXPOSE 9099

ENTRYPOINT ["collector"]
CMD ["--config.file=/etc/collector/collector.yml", "--storage.path=/var/lib/collector"]
