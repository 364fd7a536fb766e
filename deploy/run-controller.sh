#!/usr/bin/env bash
# Starts one more controller on the RedCloud network; it finds the others by itself.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/run-controller.sh [DOCKER_RUN_ARGS...]

Runs `docker run -d --network dfs-network --network-alias controller redcloud-controller`
and prints the container id. Arguments go to `docker run` before the image, for example
`-v redcloud-controller-1:/data` to keep the data in a volume, or `--name controller-1`.
Environment: REDCLOUD_NETWORK (dfs-network), REDCLOUD_TAG (latest).
USAGE
}

help_requested "${1:-}"
require docker
run_helper_node controller "$@"
