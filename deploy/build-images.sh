#!/usr/bin/env bash
# Builds the redcloud-controller, redcloud-chunkserver and redcloud-cli images from the release
# binaries, without any registry: each image is FROM scratch plus one binary and the shared
# libraries it loads. The two server images carry a cluster secret made for this build (never
# the CLI image), so containers started from one build form an authenticated cluster with no
# flag, and nothing from another build (or without the secret) can join or read it.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/build-images.sh [--no-cargo]

Builds the release binaries (cargo build --release --locked; CARGO_TARGET_DIR is honoured),
then the images redcloud-controller, redcloud-chunkserver and redcloud-cli, each tagged
`latest` (or $REDCLOUD_TAG) and with the binaries' version, and prints their sizes.

The controller and chunkserver images get a random cluster secret, made anew by every run, at
/etc/redcloud/cluster.secret (their default --cluster-token-file). Anyone who can pull the
images can read it: for a cluster on a shared network, give every node a Docker secret instead
(deploy/stack.token.yml, deploy/compose.token.yml), which overrides the baked one.

  --no-cargo   use the release binaries already built instead of running cargo
USAGE
}

help_requested "${1:-}"
run_cargo=1
case "${1:-}" in
    "") ;;
    --no-cargo) run_cargo=0 ;;
    *) usage >&2; exit 2 ;;
esac
require docker ldd

cd "$REPO_DIR"
if [ "$run_cargo" = 1 ]; then
    require cargo
    log "building release binaries"
    cargo build --release --locked -p redcloud-controller -p redcloud-chunkserver -p redcloud-cli
fi
bin_dir="${CARGO_TARGET_DIR:-target}/release"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# One secret for both server images of this build: 32 random bytes, base64.
head -c 32 /dev/urandom | base64 >"$stage/cluster.secret"

# image name, then the binary it runs
for pair in controller:redcloud-controller chunkserver:redcloud-chunkserver cli:redcloud; do
    image="redcloud-${pair%%:*}"
    binary="$bin_dir/${pair#*:}"
    [ -x "$binary" ] || die "$binary is missing: build it first, or drop --no-cargo"
    version="$("$binary" --version | awk '{print $2}')"
    log "building $image $version"
    rm -rf "$stage/rootfs"
    stage_rootfs "$stage/rootfs" "$binary"
    if [ "$image" != redcloud-cli ]; then
        mkdir -p "$stage/rootfs/etc/redcloud"
        install -m 0444 "$stage/cluster.secret" "$stage/rootfs/etc/redcloud/cluster.secret"
    fi
    docker build --quiet --build-arg "VERSION=$version" \
        --tag "$image:$REDCLOUD_TAG" --tag "$image:$version" \
        --file "$DEPLOY_DIR/docker/${pair%%:*}.Dockerfile" "$stage" >/dev/null
done

docker image ls --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}' \
    --filter "reference=redcloud-*:$REDCLOUD_TAG"
