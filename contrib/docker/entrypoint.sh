#!/bin/sh
# Container entry point: on the first start (an empty data volume) run `courriel init`, then
# replace this shell with the command (by default `courriel serve`), so that tini signals it.
# `courriel init` prints the first admin password once, into the container log.
set -eu
data="${COURRIEL_DATA:-/var/lib/courriel}"
if [ "${1:-}" = "courriel" ] && [ "${2:-}" = "serve" ] && [ ! -e "$data/courriel.toml" ]; then
    if [ -n "${COURRIEL_SERVER_HOSTNAME:-}" ]; then
        courriel init --data "$data" --hostname "$COURRIEL_SERVER_HOSTNAME"
    else
        courriel init --data "$data"
    fi
fi
exec "$@"
