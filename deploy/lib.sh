# shellcheck shell=bash
# Shared by the scripts in deploy/ (sourced, never run): names, logging, the image root
# filesystem builder and the docker helpers the user scripts and the end-to-end suite share.

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # for the scripts that source this file
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"

# The network and image tag the helper scripts use; both can be overridden from the environment.
REDCLOUD_NETWORK="${REDCLOUD_NETWORK:-dfs-network}"
REDCLOUD_TAG="${REDCLOUD_TAG:-latest}"
# Every container a helper script starts carries this label (its value is the network), so that
# scaling and teardown touch only what the helpers made.
REDCLOUD_LABEL="io.redcloud.deploy"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
    done
}

# Prints usage (the function `usage` of the calling script) and exits when the first argument
# asks for help.
help_requested() {
    case "${1:-}" in
        -h | --help) usage; exit 0 ;;
    esac
}

# stage_rootfs DIR FILE...: copies each executable FILE to DIR/usr/local/bin together with
# every shared library it loads (as ldd reports them, dynamic loader included, each at its
# exact path), plus the few files glibc and the binaries expect: name service configuration,
# account files, an empty /tmp (mode 1777) and an empty /data.
stage_rootfs() {
    local root="$1" bin line lib libc_dir=""
    shift
    mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/data"
    chmod 1777 "$root/tmp"
    for bin in "$@"; do
        [ -x "$bin" ] || die "$bin is not an executable file"
        cp "$bin" "$root/usr/local/bin/"
        if command -v strip >/dev/null 2>&1; then
            strip --strip-unneeded "$root/usr/local/bin/$(basename "$bin")"
        fi
        while read -r line; do
            case "$line" in
                *"not found"*) die "$bin needs a library that is not installed: $line" ;;
                *"=> /"*) lib="${line#*=> }" ;;
                /*) lib="$line" ;;
                *) continue ;; # linux-vdso and other libraries the kernel provides
            esac
            lib="${lib%% (*}"
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
            [ "$(basename "$lib")" != libc.so.6 ] || libc_dir="$(dirname "$lib")"
        done < <(ldd "$bin")
    done
    # glibc 2.34+ has the `files` and `dns` name services built in; older ones load them from
    # beside libc at run time, which ldd cannot see.
    for lib in "$libc_dir/libnss_files.so.2" "$libc_dir/libnss_dns.so.2"; do
        if [ -n "$libc_dir" ] && [ -e "$lib" ]; then
            cp -L "$lib" "$root$lib"
        fi
    done
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# start_node ROLE NETWORK [DOCKER_RUN_ARGS...]: the documented command for one controller or
# chunkserver (`docker run -d --network NETWORK --network-alias ROLE redcloud-ROLE`), with any
# extra docker run arguments (names, labels, volumes) before the image. Prints the container id.
start_node() {
    local role="$1" network="$2"
    shift 2
    case "$role" in
        controller | chunkserver) ;;
        *) die "unknown role $role (controller or chunkserver)" ;;
    esac
    docker run -d --network "$network" --network-alias "$role" "$@" "redcloud-$role:$REDCLOUD_TAG"
}

# network_exists NAME
network_exists() { docker network inspect "$1" >/dev/null 2>&1; }

# swarm_manager: whether this Docker engine is a manager of an active swarm (needed to create
# overlay networks).
swarm_manager() {
    [ "$(docker info --format '{{.Swarm.LocalNodeState}}/{{.Swarm.ControlAvailable}}' 2>/dev/null)" = "active/true" ]
}

# run_helper_node ROLE [DOCKER_RUN_ARGS...]: start_node on $REDCLOUD_NETWORK, labelled so that
# scale-chunkservers.sh and down.sh find it.
run_helper_node() {
    local role="$1"
    shift
    network_exists "$REDCLOUD_NETWORK" ||
        die "network $REDCLOUD_NETWORK does not exist: run deploy/init-network.sh first"
    start_node "$role" "$REDCLOUD_NETWORK" \
        --label "$REDCLOUD_LABEL=$REDCLOUD_NETWORK" --label "io.redcloud.role=$role" "$@"
}

# helper_nodes [ROLE]: ids of the containers the helper scripts started on $REDCLOUD_NETWORK
# (of one role when given), newest first, running or not.
helper_nodes() {
    local filters=(--filter "label=$REDCLOUD_LABEL=$REDCLOUD_NETWORK")
    [ -z "${1:-}" ] || filters+=(--filter "label=io.redcloud.role=$1")
    docker ps -aq "${filters[@]}"
}
