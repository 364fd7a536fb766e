#!/usr/bin/env bash
# The end-to-end suite: real containers from the redcloud images on a network of their own.
# Three controllers and three chunkservers are started with the documented `docker run`
# commands, then driven through the CLI image while the suite partitions, kills, adds and
# restarts containers, and while containers without the cluster secret (and server containers
# of another build) try to read and change the cluster. Everything it creates carries a label unique to the run and is removed
# at exit, whatever the outcome.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: deploy/e2e.sh

Needs the images from deploy/build-images.sh (tag $REDCLOUD_TAG, default latest) and the
release binaries they were built from (for a second build, which gets another secret), a Docker
engine, curl and ldd. Uses an overlay network when Docker Swarm works here (initialising a
swarm for the run if there is none, and leaving it again afterwards), otherwise a bridge
network; REDCLOUD_E2E_DRIVER=bridge skips Swarm. Takes a few minutes; the last line says
PASS or FAIL.
USAGE
}

help_requested "${1:-}"
[ $# -eq 0 ] || { usage >&2; exit 2; }
require docker curl ldd sha256sum split tar
export LC_ALL=C # one sort order for sort and comm

RUN="redcloud-e2e-$(date +%s)-$$"
LABEL="io.redcloud.e2e=$RUN"
NET="$RUN"
PROBE="$RUN-probe"
PROBE_IMAGE="$RUN-probe:latest"
OUTSIDER_TAG="$RUN-outsider" # images of a second build: the same binaries, another secret
WORK="$(mktemp -d)"
UP="$WORK/alice" # alice's working directory, mounted into the CLI containers
CHUNK_BYTES=$((4 * 1024 * 1024))
SUITE_START=$SECONDS
STEP_START=$SECONDS
STEP=""
swarm_initialised=0
gwbridge_existed=0
mkdir -p "$UP/downloads"

controller() { echo "$RUN-controller-$1"; }
chunkserver() { echo "$RUN-chunkserver-$1"; }
CONTROLLERS=("$(controller 1)" "$(controller 2)" "$(controller 3)")
CHUNKSERVERS=("$(chunkserver 1)" "$(chunkserver 2)" "$(chunkserver 3)")

# ---------------------------------------------------------------------------------------------
# Reporting and cleanup

step() {
    [ -z "$STEP" ] || log "---- done: $STEP ($((SECONDS - STEP_START)) s)"
    STEP="$1"
    STEP_START=$SECONDS
    log "==== $STEP"
}

fail() {
    log "FAILED in step \"$STEP\": $*"
    exit 1
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    local background
    mapfile -t background < <(jobs -p)
    [ ${#background[@]} -eq 0 ] || kill "${background[@]}" 2>/dev/null
    local ids
    mapfile -t ids < <(docker ps -aq --filter "label=$LABEL")
    if [ "$status" -ne 0 ]; then
        local id
        for id in "${ids[@]}"; do
            log "---- logs of $(docker inspect -f '{{.Name}}' "$id" | tr -d /) (last 150 lines)"
            docker logs --tail 150 "$id" 2>&1
        done
    fi
    [ ${#ids[@]} -eq 0 ] || docker rm -f "${ids[@]}" >/dev/null
    docker network rm "$NET" >/dev/null 2>&1
    docker image rm "$PROBE_IMAGE" >/dev/null 2>&1
    local image
    for image in controller chunkserver cli; do
        docker image rm "redcloud-$image:$OUTSIDER_TAG" >/dev/null 2>&1
    done
    if [ "$swarm_initialised" = 1 ]; then
        docker swarm leave --force >/dev/null
        # Joining a swarm also created this bridge; it was not here before the run.
        [ "$gwbridge_existed" = 1 ] || docker network rm docker_gwbridge >/dev/null 2>&1
        log "left the swarm this run initialised"
    fi
    rm -rf "$WORK"
    if [ "$status" -eq 0 ]; then
        log "PASS: end-to-end suite in $((SECONDS - SUITE_START)) s"
    else
        log "FAIL: end-to-end suite (exit $status after $((SECONDS - SUITE_START)) s)"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every second until it succeeds;
# fails the suite after SECONDS, with what COMMAND left in $WORK/why about its last attempt.
wait_until() {
    local limit="$1" what="$2" deadline=$((SECONDS + $1))
    shift 2
    : >"$WORK/why"
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what: not after ${limit} s. $(cat "$WORK/why")"
        sleep 1
    done
}

# ---------------------------------------------------------------------------------------------
# Talking to the nodes

# The probe is a container on the suite's network holding curl, so that controllers are reached
# by container name on bridge and overlay networks alike (the host cannot reach overlay
# addresses).
start_probe() {
    stage_rootfs "$WORK/probe/rootfs" "$(command -v curl)" "$(command -v sleep)"
    printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/local/bin/sleep", "infinity"]\n' \
        >"$WORK/probe/Dockerfile"
    docker build --quiet --tag "$PROBE_IMAGE" "$WORK/probe" >/dev/null
    docker run -d --name "$PROBE" --label "$LABEL" --network "$NET" "$PROBE_IMAGE" >/dev/null
}

# http NAME PATH: GET http://NAME:8000/PATH from the probe, body on stdout.
http() { docker exec "$PROBE" curl -sf --max-time 5 "http://$1:8000$2"; }

# run_cli DIR NETWORK ARGS...: the documented CLI command with DIR as the working directory
# (`docker run --rm --network NETWORK -v DIR:/uploads -v DIR/downloads:/downloads -w /uploads
# redcloud-cli ARGS`), reading this shell's stdin. $CLI_SERVER, when set, names the controller
# instead of the alias.
run_cli() {
    local dir="$1" network="$2" env=()
    shift 2
    [ -z "${CLI_SERVER:-}" ] || env=(-e "REDCLOUD_SERVER=$CLI_SERVER")
    docker run --rm -i --label "$LABEL" --network "$network" --user "$(id -u):$(id -g)" \
        -v "$dir:/uploads" -v "$dir/downloads:/downloads" -w /uploads "${env[@]}" \
        "redcloud-cli:$REDCLOUD_TAG" "$@"
}

# node_state CONTROLLER: its read-model digest and operation count, read from its cluster
# listener with the cluster secret, as an operator does with `redcloud log`.
node_state() {
    docker run --rm --label "$LABEL" --network "$NET" \
        -v "$WORK/cluster.secret:/run/secrets/cluster.secret:ro" \
        -e REDCLOUD_CLUSTER_TOKEN_FILE=/run/secrets/cluster.secret \
        "redcloud-cli:$REDCLOUD_TAG" --server "http://$1:8001" log digest
}

# cluster_status CONTROLLER: its /status as JSON.
cluster_status() { http "$1" '/status?format=json'; }

# cli ARGS...: one CLI command in alice's directory, through the alias `controller`.
cli() { run_cli "$UP" "$NET" "$@" </dev/null; }

# cli_via CONTROLLER ARGS...: one CLI command through one controller, by container name.
cli_via() { CLI_SERVER="http://$1:8000" cli "${@:2}"; }

# make_file NAME KIB: a file of random bytes in alice's directory.
make_file() { head -c "$(($2 * 1024))" /dev/urandom >"$UP/$1"; }

# chunks_of FILE...: the ids of the chunks the files are cut into, sorted.
chunks_of() {
    local f
    for f in "$@"; do
        split -b "$CHUNK_BYTES" --filter=sha256sum "$UP/$f" | cut -d' ' -f1
    done | sort -u
}

# chunks_on CHUNKSERVER: the chunk ids under its data directory's chunks/ (not tmp/, corrupt/).
chunks_on() {
    docker cp "$1:/data/redcloud-data/chunkserver" - 2>/dev/null | tar -t 2>/dev/null |
        sed -nE 's#^(.*/)?chunks/[0-9a-f]{2}/([0-9a-f]{64})$#\2#p' | sort -u
}

# has_chunks CHUNKSERVER...: each holds every chunk listed in $WORK/expected-chunks.
has_chunks() {
    local cs missing
    for cs in "$@"; do
        missing=$(comm -23 "$WORK/expected-chunks" <(chunks_on "$cs") | wc -l)
        if [ "$missing" -ne 0 ]; then
            echo "$cs lacks $missing chunk(s)" >"$WORK/why"
            return 1
        fi
    done
}

# expect_chunks FILE...: adds the files' chunks to those every chunkserver must hold.
expect_chunks() {
    chunks_of "$@" | sort -u - "$WORK/expected-chunks" -o "$WORK/expected-chunks"
}

# converged CONTROLLER...: every controller has one read-model digest and operation count.
converged() {
    local c first="" this
    for c in "$@"; do
        this=$(node_state "$c" 2>&1) || { echo "$c does not answer: $this" >"$WORK/why"; return 1; }
        [ -n "$first" ] || first="$this"
        if [ "$this" != "$first" ]; then
            echo "$c: $this; ${1}: $first" >"$WORK/why"
            return 1
        fi
    done
}

# same_listing CONTROLLER...: alice's full listing is identical through every controller.
same_listing() {
    local c first=""
    for c in "$@"; do
        cli_via "$c" --json list >"$WORK/listing-$c" 2>&1 || { echo "list via $c failed" >"$WORK/why"; return 1; }
        [ -n "$first" ] || first="$c"
        cmp -s "$WORK/listing-$first" "$WORK/listing-$c" || {
            echo "listings differ between $first and $c" >"$WORK/why"
            return 1
        }
    done
}

# wait_converged SECONDS: all controllers converge and every chunkserver holds every chunk.
wait_converged() {
    local all_cs=("${CHUNKSERVERS[@]}")
    wait_until "$1" "controllers converge" converged "${CONTROLLERS[@]}"
    wait_until "$1" "every chunk on every chunkserver" has_chunks "${all_cs[@]}"
    same_listing "${CONTROLLERS[@]}" || fail "$(cat "$WORK/why")"
    log "converged: digest $(node_state "${CONTROLLERS[0]}" | cut -c1-12)…," \
        "$(wc -l <"$WORK/expected-chunks") chunk(s) on each of ${#all_cs[@]} chunkservers"
}

# listed NAME [TAG]: alice's listing (of TAG, through the alias) shows the file NAME.
listed() {
    local out
    out=$(cli list "${@:2}") || return 1
    grep -q "^$1 " <<<"$out"
}

# downloads_intact FILE...: each downloads (through the alias) to the same bytes.
downloads_intact() {
    local f
    for f in "$@"; do
        rm -f "$UP/downloads/$f"
        cli download "$f" >/dev/null || fail "download of $f failed"
        cmp -s "$UP/$f" "$UP/downloads/$f" || fail "$f downloaded with different bytes"
    done
}

# ready CONTROLLER N: it answers /ready with N healthy chunkservers and knows the other controllers.
ready() {
    http "$1" /ready | grep "\"healthy_chunkservers\":$2[,}]" >/dev/null &&
        [ "$(cluster_status "$1" | grep -o '"is_self"' | wc -l)" -ge "${#CONTROLLERS[@]}" ]
}

# started_since TIME CHUNKSERVER: it logged its start after TIME.
started_since() { docker logs --since "$1" "$2" 2>&1 | grep "chunkserver starting" >/dev/null; }

# ---------------------------------------------------------------------------------------------

step "network"
if docker network inspect docker_gwbridge >/dev/null 2>&1; then gwbridge_existed=1; fi
driver=bridge
if [ "${REDCLOUD_E2E_DRIVER:-auto}" = bridge ]; then
    log "REDCLOUD_E2E_DRIVER=bridge: not trying Swarm"
elif swarm_manager; then
    driver=overlay
elif [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ]; then
    if docker swarm init >"$WORK/swarm.log" 2>&1; then
        swarm_initialised=1
        driver=overlay
    else
        log "docker swarm init failed: $(tail -1 "$WORK/swarm.log")"
    fi
fi
if [ "$driver" = overlay ] &&
    ! { docker network create --driver overlay --attachable --label "$LABEL" "$NET" >/dev/null &&
        start_probe; }; then
    log "cannot run containers on an overlay network here"
    docker rm -f "$PROBE" >/dev/null 2>&1 || true
    docker network rm "$NET" >/dev/null 2>&1 || true
    driver=bridge
fi
if [ "$driver" = bridge ]; then
    log "Swarm is not used: falling back to a bridge network (one host)"
    docker network create --driver bridge --label "$LABEL" "$NET" >/dev/null
    start_probe
fi
log "network $NET ($driver)"

step "the cluster secret baked into this build's server images"
docker create --name "$RUN-secret" --label "$LABEL" "redcloud-controller:$REDCLOUD_TAG" >/dev/null
docker cp "$RUN-secret:/etc/redcloud/cluster.secret" "$WORK/cluster.secret"
docker rm "$RUN-secret" >/dev/null
chmod 0644 "$WORK/cluster.secret"
log "a second build of the server images (another secret) for the outsiders"
REDCLOUD_TAG="$OUTSIDER_TAG" "$DEPLOY_DIR/build-images.sh" --no-cargo >/dev/null
for image in controller chunkserver; do
    docker run --rm --entrypoint /usr/local/bin/redcloud-$image "redcloud-$image:$REDCLOUD_TAG" --version >/dev/null
done

step "start 3 controllers and 3 chunkservers with the documented commands"
for c in "${CONTROLLERS[@]}"; do start_node controller "$NET" --name "$c" --label "$LABEL" >/dev/null; done
for cs in "${CHUNKSERVERS[@]}"; do start_node chunkserver "$NET" --name "$cs" --label "$LABEL" >/dev/null; done
for c in "${CONTROLLERS[@]}"; do
    wait_until 60 "$c ready with 3 chunkservers and 2 peers" ready "$c" 3
done

step "register, upload with tags, list, download"
: >"$WORK/expected-chunks"
cli register alice s3cret >/dev/null || fail "register failed"
printf 'hello from the end-to-end suite\n' >"$UP/hello.txt"
make_file photo.bin 1500
make_file big.bin 9000 # three chunks
cli add hello.txt photo.bin --tags work,urgent >/dev/null || fail "upload failed"
cli add big.bin --tags archive >/dev/null || fail "upload failed"
expect_chunks hello.txt photo.bin big.bin
for f in hello.txt photo.bin; do listed "$f" work || fail "$f not listed under work"; done
listed big.bin archive || fail "big.bin not listed under archive"
! listed big.bin work || fail "big.bin listed under a tag it does not carry"
downloads_intact hello.txt photo.bin big.bin
printf 'list urgent\nexit\n' | run_cli "$UP" "$NET" >"$WORK/shell.out" 2>&1 || fail "the shell failed"
grep -q '^photo.bin ' "$WORK/shell.out" || fail "the shell did not list photo.bin: $(cat "$WORK/shell.out")"
wait_converged 60

step "outsiders on the network get nothing and change nothing"
before=$(node_state "${CONTROLLERS[0]}")
# Plain HTTP to the cluster listener, as curl sends it: no answer at all.
if docker exec "$PROBE" curl -s --max-time 5 "http://${CONTROLLERS[0]}:8001/internal/state" >"$WORK/outsider.out" 2>&1; then
    fail "plain HTTP to the cluster listener was answered: $(cat "$WORK/outsider.out")"
fi
# The client listener has no internal route.
if http "${CONTROLLERS[0]}" /internal/state >/dev/null 2>&1; then
    fail "the client listener served /internal/state"
fi
# The CLI image carries no secret: `redcloud log` from it reads nothing.
if docker run --rm --label "$LABEL" --network "$NET" "redcloud-cli:$REDCLOUD_TAG" \
    --server "http://${CONTROLLERS[0]}:8001" log show >"$WORK/outsider.out" 2>&1; then
    fail "the CLI read the log without the secret: $(head -c 300 "$WORK/outsider.out")"
fi
# Server containers of another build join the aliases with the documented commands.
docker run -d --network "$NET" --network-alias controller --name "$RUN-outsider-controller" \
    --label "$LABEL" "redcloud-controller:$OUTSIDER_TAG" >/dev/null
docker run -d --network "$NET" --network-alias chunkserver --name "$RUN-outsider-chunkserver" \
    --label "$LABEL" "redcloud-chunkserver:$OUTSIDER_TAG" >/dev/null
sleep 15 # several discovery, gossip and heartbeat rounds
for c in "${CONTROLLERS[@]}"; do
    status=$(cluster_status "$c") || fail "$c has no status"
    [ "$(grep -o '"is_self"' <<<"$status" | wc -l)" -eq "${#CONTROLLERS[@]}" ] ||
        fail "$c counts the outsider among its controllers: $status"
    [ "$(grep -o '"capacity_bytes"' <<<"$status" | wc -l)" -eq "${#CHUNKSERVERS[@]}" ] ||
        fail "$c counts the outsider among its chunkservers: $status"
done
[ "$(node_state "${CONTROLLERS[0]}")" = "$before" ] || fail "the outsiders changed the metadata"
outsider_status=$(cluster_status "$RUN-outsider-controller") || fail "the outsider controller has no status"
[ "$(grep -o '"is_self"' <<<"$outsider_status" | wc -l)" -eq 1 ] ||
    fail "the outsider controller found the cluster's controllers: $outsider_status"
if CLI_SERVER="http://$RUN-outsider-controller:8000" cli list >/dev/null 2>&1; then
    fail "alice's key works on the outsider controller"
fi
docker rm -f "$RUN-outsider-controller" "$RUN-outsider-chunkserver" >/dev/null
downloads_intact hello.txt
wait_converged 60

step "partition: one controller and one chunkserver disconnected, writes on both sides"
island=("${CONTROLLERS[0]}" "${CHUNKSERVERS[0]}")
mkdir -p "$WORK/island/downloads"
cp -r "$UP/.redcloud" "$WORK/island/" # alice's key and a frontier the island holds
for node in "${island[@]}"; do docker network disconnect "$NET" "$node"; done
make_file partition.bin 6000
cli add partition.bin --tags work,mainland >/dev/null || fail "upload during the partition failed"
expect_chunks partition.bin
cli add-tags archive --tags mainland >/dev/null || fail "tagging during the partition failed"
# The island has no network at all: the CLI shares the isolated controller's network namespace.
island_cli() {
    CLI_SERVER=http://127.0.0.1:8000 run_cli "$WORK/island" "container:${CONTROLLERS[0]}" "$@" </dev/null
}
island_cli add-tags urgent --tags island >/dev/null || fail "tagging on the isolated controller failed"
island_cli delete-tags work --tags urgent >/dev/null || fail "untagging on the isolated controller failed"
island_cli list island | grep '^photo.bin ' >/dev/null || fail "the isolated controller does not show its own write"
if island_cli list mainland | grep partition.bin >/dev/null; then
    fail "the isolated controller saw a write it cannot have received"
fi
docker network connect --alias controller "$NET" "${CONTROLLERS[0]}"
docker network connect --alias chunkserver "$NET" "${CHUNKSERVERS[0]}"
wait_converged 90
listed photo.bin island || fail "the isolated side's tag is missing after healing"
listed partition.bin mainland || fail "the connected side's upload is missing after healing"
! listed hello.txt urgent || fail "the isolated side's tag removal is missing after healing"
downloads_intact partition.bin

step "kill a controller and a chunkserver mid-upload, start them again"
# Uploads go through the controller that is killed, so that the last ones it acknowledged may
# exist nowhere else but in its log when it dies. The second upload is large, so that it is
# still being sent when the kill comes.
: >"$WORK/acked"
: >"$WORK/refused"
uploads=8
for i in $(seq "$uploads"); do make_file "kill-$i.bin" 12000; done
make_file kill-2.bin 160000
(
    for i in $(seq "$uploads"); do
        [ "$i" != 2 ] || touch "$WORK/large-upload-started"
        if cli_via "${CONTROLLERS[1]}" add "kill-$i.bin" --tags killed >/dev/null 2>>"$WORK/refused"; then
            echo "kill-$i.bin" >>"$WORK/acked"
        else
            echo "kill-$i.bin was refused" >>"$WORK/refused"
            sleep 1
        fi
    done
) &
writer=$!
deadline=$((SECONDS + 60))
until [ -e "$WORK/large-upload-started" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the first upload did not finish within 60 s"
    sleep 0.1
done
sleep 1 # its CLI container starts in about half a second; the upload takes about two
docker kill "${CONTROLLERS[1]}" "${CHUNKSERVERS[1]}" >/dev/null
log "killed ${CONTROLLERS[1]} and ${CHUNKSERVERS[1]} during the upload of kill-2.bin (160 MB)"
sleep 2
docker start "${CONTROLLERS[1]}" "${CHUNKSERVERS[1]}" >/dev/null
wait "$writer"
mapfile -t acked <"$WORK/acked"
log "${#acked[@]} of $uploads uploads acknowledged, $(grep -c 'was refused' "$WORK/refused" || true) refused:"
sed 's/^/    /' "$WORK/refused" >&2
if grep -qx kill-2.bin "$WORK/acked"; then
    log "kill-2.bin was acknowledged: the kill came after its upload had finished"
fi
[ "${#acked[@]}" -ge 2 ] || fail "too few uploads acknowledged"
expect_chunks "${acked[@]}"
wait_converged 90
for f in "${acked[@]}"; do listed "$f" killed || fail "acknowledged $f was lost"; done
downloads_intact "${acked[@]}"

step "a fourth chunkserver receives every chunk"
CHUNKSERVERS+=("$(chunkserver 4)")
start_node chunkserver "$NET" --name "${CHUNKSERVERS[3]}" --label "$LABEL" >/dev/null
wait_converged 90

step "rolling restart of every container while a client works"
# The client retries a failed command twice, a second apart, as a user would: a controller
# that is stopping or has just started refuses some requests (a connection closed during its
# shutdown, or 503 until its first chunkserver heartbeat). A command failing three times in a
# row fails the suite; every retry is counted and shown.
retrying() {
    local attempt
    for attempt in 1 2 3; do
        if "$@" >/dev/null 2>>"$WORK/client-errors"; then
            return 0
        fi
        echo "attempt $attempt of: ${*: -3}" >>"$WORK/client-errors"
        echo x >>"$WORK/client-retries"
        sleep 1
    done
    return 1
}
downloaded_intact() { cli download "$1" && cmp -s "$UP/$1" "$UP/downloads/$1"; }
touch "$WORK/client-running"
(
    i=0
    while [ -e "$WORK/client-running" ]; do
        i=$((i + 1))
        f="rolling-$i.bin"
        make_file "$f" 700
        if retrying cli add "$f" --tags rolling && retrying listed "$f" rolling &&
            retrying downloaded_intact "$f"; then
            echo "$f" >>"$WORK/client-ok"
        else
            echo "$f" >>"$WORK/client-failed"
        fi
    done
) &
client=$!
for node in "${CONTROLLERS[@]}" "${CHUNKSERVERS[@]}"; do
    since=$(date +%s)
    started=$SECONDS
    docker restart --time 20 "$node" >/dev/null
    case "$node" in
        *-controller-*) wait_until 60 "$node back" ready "$node" "${#CHUNKSERVERS[@]}" ;;
        *) wait_until 60 "$node back" started_since "$since" "$node" ;;
    esac
    log "restarted $node in $((SECONDS - started)) s"
done
sleep 3
rm "$WORK/client-running"
wait "$client"
touch "$WORK/client-ok" "$WORK/client-failed" "$WORK/client-retries" "$WORK/client-errors"
ok_count=$(wc -l <"$WORK/client-ok")
failed_count=$(wc -l <"$WORK/client-failed")
log "client: $ok_count round(s) of add, list and download succeeded, $failed_count failed," \
    "$(wc -l <"$WORK/client-retries") command(s) retried"
[ ! -s "$WORK/client-errors" ] || sed 's/^/    /' "$WORK/client-errors" >&2
[ "$failed_count" -eq 0 ] || fail "the client failed during the rolling restart"
[ "$ok_count" -ge 3 ] || fail "the client made too little progress ($ok_count rounds)"
mapfile -t rolled <"$WORK/client-ok"
expect_chunks "${rolled[@]}"
wait_converged 90
everything=$(cli list) || fail "listing failed"
for f in hello.txt photo.bin big.bin partition.bin "${acked[@]}" "${rolled[@]}"; do
    grep -q "^$f " <<<"$everything" || fail "$f is missing after the rolling restart"
done
downloads_intact big.bin partition.bin "${acked[0]}"
step "done"
