#!/usr/bin/env bash
# Browser tests of the web app: a real headless Chromium, driven by Selenium, against a local
# two-controller cluster (`redcloud up`) on loopback ports. Installs what it lacks (Debian's
# chromium and chromium-driver, Selenium from PyPI in a venv under target/), starts the cluster,
# runs tests/web/app_test.py, and stops the cluster whatever happens. Screenshots and the
# measured budgets land in target/web-artifacts/.
#
# Usage: tests/web/run.sh            (builds the release CLI first)
#        REDCLOUD_BIN=path tests/web/run.sh   (uses that redcloud binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
venv="$repo/target/web-venv"
if ! "$venv/bin/python" -c 'import selenium' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'selenium>=4.20,<5'
fi

if [ -z "${REDCLOUD_BIN:-}" ]; then
    cargo build --release --locked -p redcloud-cli --bin redcloud
    REDCLOUD_BIN="$repo/target/release/redcloud"
fi

work=$(mktemp -d)
artifacts="$repo/target/web-artifacts"
rm -rf "$artifacts"
mkdir -p "$artifacts"
cluster_pid=
cleanup() {
    if [ -n "$cluster_pid" ]; then
        kill "$cluster_pid" 2>/dev/null || true
        wait "$cluster_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Two controllers on free consecutive ports.
port=$(python3 -c 'import socket
for p in range(18400, 19000, 2):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
        a.close(); b.close(); print(p); break
    except OSError:
        pass')
"$REDCLOUD_BIN" up --controllers 2 --chunkservers 2 --listen "127.0.0.1:$port" \
    --s3-listen 127.0.0.1:0 --data-dir "$work/data" >"$artifacts/cluster.log" 2>&1 &
cluster_pid=$!
for url in "http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))"; do
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

REDCLOUD_BIN="$REDCLOUD_BIN" REDCLOUD_CONFIG="$work/cli.json" \
    "$venv/bin/python" tests/web/app_test.py \
    "http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))" "$artifacts"
