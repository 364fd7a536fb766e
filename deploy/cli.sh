#!/usr/bin/env bash
# Runs the RedCloud CLI in a container on the RedCloud network, on the current directory.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/cli.sh [COMMAND [ARGS...]]

Without a command, starts the interactive shell; otherwise runs one command, e.g.
`deploy/cli.sh register alice s3cret`, `deploy/cli.sh add report.pdf --tags work`,
`deploy/cli.sh list work`, `deploy/cli.sh download report.pdf`.
The current directory is mounted at /uploads (files to add are named relative to it, and the
key is kept in ./.redcloud/config.json); downloads land in ./downloads. The container runs
with your user id, so what it writes stays yours.
Environment: REDCLOUD_NETWORK (dfs-network), REDCLOUD_TAG (latest).
USAGE
}

help_requested "${1:-}"
require docker
mkdir -p downloads
tty=(-i)
[ ! -t 0 ] || [ ! -t 1 ] || tty=(-it)
exec docker run "${tty[@]}" --rm --network "$REDCLOUD_NETWORK" --user "$(id -u):$(id -g)" \
    -v "$(pwd):/uploads" -v "$(pwd)/downloads:/downloads" -w /uploads \
    "redcloud-cli:$REDCLOUD_TAG" "$@"
