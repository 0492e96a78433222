# syntax=docker/dockerfile:1
# Courriel appliance image (ARCHITECTURE §1): a wheel built in the first stage, installed into a
# virtualenv in a slim runtime image. No source tree is on sys.path at run time.
#
#   docker build -t courriel .
#   docker run -d --name courriel -v courriel-data:/var/lib/courriel \
#     -e COURRIEL_SERVER_HOSTNAME=mail.example.org \
#     -p 25:25 -p 465:465 -p 587:587 -p 143:143 -p 993:993 -p 8443:8443 courriel
#
# Ports below 1024 as a non-root user: Docker (20.10 and later) and Podman set
# net.ipv4.ip_unprivileged_port_start=0 in the container's network namespace, so no capability
# is needed; compose.yaml sets it explicitly. Elsewhere, set that sysctl for the container.
# Configuration: COURRIEL_<SECTION>_<KEY> environment variables (see courriel.toml in the volume).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: the wheels
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server/ server/
COPY smtp/ smtp/
COPY imap/ imap/
COPY admin/ admin/
COPY dns/ dns/
COPY imapsync/ imapsync/
# The application's wheel and the wheels of every dependency (one wheelhouse for the runtime stage).
RUN python -m pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 courriel \
    && useradd --system --uid 10001 --gid courriel --home-dir /var/lib/courriel --no-create-home \
       --shell /usr/sbin/nologin courriel
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/courriel \
    && /opt/courriel/bin/pip install --no-index --find-links /wheels courriel
COPY --chmod=0755 contrib/docker/entrypoint.sh /usr/local/bin/courriel-entrypoint
RUN install -d -o courriel -g courriel -m 0750 /var/lib/courriel

ENV PATH=/opt/courriel/bin:$PATH \
    PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COURRIEL_DATA=/var/lib/courriel \
    COURRIEL_LOG_FORMAT=json

# One volume: the data directory (database, message files, keys, configuration).
VOLUME ["/var/lib/courriel"]
# mx, submissions, submission, imap, imaps, admin (courriel.config.LISTENER_PORTS, production profile)
EXPOSE 25 465 587 143 993 8443
USER courriel:courriel
WORKDIR /var/lib/courriel
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["courriel", "healthcheck"]
# tini is PID 1: it forwards SIGTERM to the supervisor (which stops every role) and reaps orphans.
ENTRYPOINT ["tini", "--", "courriel-entrypoint"]
CMD ["courriel", "serve"]
