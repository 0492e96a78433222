#!/bin/sh
# Container entry point: on the first start (an empty data volume) run `courriel init`, then
# replace this shell with the command (by default `courriel serve`), so that tini signals it.
# The first admin password is written to DATA/initial-admin.txt (mode 0600), never to the
# container log: read it with `docker exec courriel cat /var/lib/courriel/initial-admin.txt`,
# then delete the file.
set -eu
data="${COURRIEL_DATA:-/var/lib/courriel}"
if [ "${1:-}" = "courriel" ] && [ "${2:-}" = "serve" ] && [ ! -e "$data/courriel.toml" ]; then
    mkdir -p "$data"
    (
        umask 077
        if [ -n "${COURRIEL_SERVER_HOSTNAME:-}" ]; then
            courriel init --data "$data" --hostname "$COURRIEL_SERVER_HOSTNAME" > "$data/initial-admin.txt"
        else
            courriel init --data "$data" > "$data/initial-admin.txt"
        fi
    )
    echo "courriel: initialised $data; the first admin password is in $data/initial-admin.txt" >&2
fi
exec "$@"
