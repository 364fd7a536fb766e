# Shared by the suites that drive a local cluster with real clients (tests/web/run.sh,
# tests/s3/run.sh): installing what they lack, a scratch directory cleaned up whatever
# happens, free loopback ports, and a `redcloud up` cluster that is ready before the clients
# start. Sourced from the repository root, under `set -euo pipefail`.

repo=$PWD

# Installs the Debian packages of the commands that are missing, given as COMMAND=PACKAGE,
# and python3-venv when the venv module is.
need_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
    done
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# Makes the venv DIR hold the PyPI requirements given (again when the list changed).
python_venv() {
    local venv=$1
    shift
    if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$*" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "$@"
        echo "$*" >"$venv/.requirements"
    fi
}

# Sets REDCLOUD_BIN, building the release binary unless the environment names one.
redcloud_binary() {
    if [ -z "${REDCLOUD_BIN:-}" ]; then
        cargo build --release --locked -p redcloud-cli --bin redcloud
        REDCLOUD_BIN="$repo/target/release/redcloud"
    fi
}

# Makes a scratch directory ($work) and empties target/NAME-artifacts ($artifacts); on exit
# the cluster stops and the scratch directory goes, whatever happened.
scratch_and_artifacts() {
    work=$(mktemp -d)
    artifacts="$repo/target/$1-artifacts"
    rm -rf "$artifacts"
    mkdir -p "$artifacts"
    trap stop_cluster EXIT
}

cluster_pid=
stop_cluster() {
    if [ -n "$cluster_pid" ]; then
        kill "$cluster_pid" 2>/dev/null || true
        wait "$cluster_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}

# The first port P in [FROM, TO) such that P and P + 1 are both free on 127.0.0.1.
free_port_pair() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
for p in range(int(sys.argv[1]), int(sys.argv[2]), 2):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
        a.close(); b.close(); print(p); break
    except OSError:
        pass
else:
    sys.exit("no two free consecutive ports")
EOF
}

# Starts `redcloud up` with the arguments given (its log in $artifacts/cluster.log) and waits
# until each controller URL in the array READY_URLS answers /ready.
start_cluster() {
    "$REDCLOUD_BIN" up --data-dir "$work/data" "$@" >"$artifacts/cluster.log" 2>&1 &
    cluster_pid=$!
    local url
    for url in "${READY_URLS[@]}"; do
        for _ in $(seq 1 150); do
            if curl -sf "$url/ready" >/dev/null 2>&1; then break; fi
            if ! kill -0 "$cluster_pid" 2>/dev/null; then
                echo "the cluster exited; its log:" >&2
                cat "$artifacts/cluster.log" >&2
                exit 1
            fi
            sleep 0.2
        done
        curl -sf "$url/ready" >/dev/null || { echo "$url never became ready" >&2; exit 1; }
    done
}
