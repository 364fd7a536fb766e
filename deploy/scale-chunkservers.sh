#!/usr/bin/env bash
# Starts or removes chunkservers until N of them, started by these scripts, are running.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/scale-chunkservers.sh N [DOCKER_RUN_ARGS...]

Starts chunkservers (`docker run -d --network dfs-network --network-alias chunkserver
redcloud-chunkserver`) until N of those started by these scripts run on this host, or stops
and removes the newest ones beyond N. A new chunkserver receives a copy of every chunk; a
removed one takes its (ephemeral) data with it, which the other chunkservers still hold.
Extra arguments go to `docker run` for the chunkservers started; a named volume belongs to
one chunkserver, so start those one at a time (`deploy/scale-chunkservers.sh 4 -v cs-4:/data`).
Environment: REDCLOUD_NETWORK (dfs-network), REDCLOUD_TAG (latest).
USAGE
}

help_requested "${1:-}"
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
    usage >&2
    exit 2
fi
want="$1"
shift
require docker

# Stopped containers count as gone: remove them so they are not mistaken for capacity.
mapfile -t stopped < <(docker ps -aq --filter "label=$REDCLOUD_LABEL=$REDCLOUD_NETWORK" \
    --filter "label=io.redcloud.role=chunkserver" --filter status=exited)
[ ${#stopped[@]} -eq 0 ] || docker rm "${stopped[@]}" >/dev/null
mapfile -t running < <(helper_nodes chunkserver)
have=${#running[@]}
if [ "$have" -lt "$want" ]; then
    for _ in $(seq $((want - have))); do
        run_helper_node chunkserver "$@" >/dev/null
    done
elif [ "$have" -gt "$want" ]; then
    docker stop "${running[@]:0:$((have - want))}" >/dev/null
    docker rm "${running[@]:0:$((have - want))}" >/dev/null
fi
log "$want chunkserver(s) on $REDCLOUD_NETWORK (were $have)"
