#!/usr/bin/env bash
# Removes the controllers and chunkservers the helper scripts started, then the network.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/down.sh

Stops and removes every container started by run-controller.sh and scale-chunkservers.sh on
$REDCLOUD_NETWORK (default dfs-network), then removes the network if nothing else uses it.
Named volumes are kept (`docker volume rm` them to delete the data). A stack or compose
deployment is removed with `docker stack rm` or `docker compose down` instead.
USAGE
}

help_requested "${1:-}"
[ $# -eq 0 ] || { usage >&2; exit 2; }
require docker

mapfile -t nodes < <(helper_nodes "")
if [ ${#nodes[@]} -gt 0 ]; then
    docker stop "${nodes[@]}" >/dev/null
    docker rm "${nodes[@]}" >/dev/null
fi
log "removed ${#nodes[@]} container(s)"
if network_exists "$REDCLOUD_NETWORK"; then
    if docker network rm "$REDCLOUD_NETWORK" >/dev/null 2>&1; then
        log "removed network $REDCLOUD_NETWORK"
    else
        log "network $REDCLOUD_NETWORK is still in use by other containers; kept"
    fi
fi
