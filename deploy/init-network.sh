#!/usr/bin/env bash
# Creates the network RedCloud containers share: an attachable overlay network when this
# Docker engine manages a swarm (containers on every host of the swarm join it), otherwise a
# bridge network (one host).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/init-network.sh [--bridge]

Creates the network $REDCLOUD_NETWORK (default dfs-network). On a swarm manager it is
`docker network create --driver overlay --attachable`, so containers on every host of the
swarm can join it; elsewhere, or with --bridge, it is a bridge network for one host.
Run `docker swarm init` first (and `docker swarm join` on the other hosts) for several hosts.
USAGE
}

help_requested "${1:-}"
driver=bridge
case "${1:-}" in
    "") if swarm_manager; then driver=overlay; fi ;;
    --bridge) ;;
    *) usage >&2; exit 2 ;;
esac
require docker

if network_exists "$REDCLOUD_NETWORK"; then
    log "network $REDCLOUD_NETWORK exists ($(docker network inspect -f '{{.Driver}}' "$REDCLOUD_NETWORK"))"
    exit 0
fi
if [ "$driver" = overlay ]; then
    docker network create --driver overlay --attachable "$REDCLOUD_NETWORK" >/dev/null
else
    log "this engine is not a swarm manager: creating a bridge network (one host only)"
    docker network create --driver bridge "$REDCLOUD_NETWORK" >/dev/null
fi
log "created network $REDCLOUD_NETWORK ($driver)"
