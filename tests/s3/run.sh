#!/usr/bin/env bash
# The S3 gateway driven by real S3 clients: boto3 and the AWS CLI (PyPI, in a venv under
# target/), rclone and s3cmd (Debian packages), against a local two-controller cluster
# (`redcloud up`) on loopback ports. Installs what it lacks, starts the cluster, runs
# tests/s3/clients_test.py, and stops the cluster whatever happens. The cluster's log lands in
# target/s3-artifacts/.
#
# Usage: tests/s3/run.sh                      (builds the release CLI first)
#        REDCLOUD_BIN=path tests/s3/run.sh    (uses that redcloud binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

missing=()
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v s3cmd >/dev/null 2>&1 || missing+=(s3cmd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
venv="$repo/target/s3-venv"
if ! "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1 || [ ! -x "$venv/bin/aws" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'boto3>=1.34,<2' 'awscli>=1.32,<2'
fi

if [ -z "${REDCLOUD_BIN:-}" ]; then
    cargo build --release --locked -p redcloud-cli --bin redcloud
    REDCLOUD_BIN="$repo/target/release/redcloud"
fi

# Multipart uploads left unfinished this long are aborted; the suite checks that it happens.
EXPIRY=60s
# Room for the 100 MiB copy, and a limit multipart uploads must keep too.
UPLOAD_MAX_BYTES=$((101 * 1024 * 1024))
work=$(mktemp -d)
artifacts="$repo/target/s3-artifacts"
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

# Two controllers on free consecutive ports for the API and two for S3.
read -r port s3_port < <(python3 -c 'import socket
def free(p):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
        a.close(); b.close(); return True
    except OSError:
        return False
api = next(p for p in range(18500, 19000, 2) if free(p))
s3 = next(p for p in range(19500, 20000, 2) if free(p))
print(api, s3)')
"$REDCLOUD_BIN" up --controllers 2 --chunkservers 2 --listen "127.0.0.1:$port" \
    --s3-listen "127.0.0.1:$s3_port" --s3-multipart-expiry "$EXPIRY" \
    --upload-max-bytes "$UPLOAD_MAX_BYTES" \
    --s3-root-domain s3.test --data-dir "$work/data" >"$artifacts/cluster.log" 2>&1 &
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

# The environment may name a CA bundle for AWS tools; these endpoints are plain HTTP, and
# rclone refuses to start with a custom bundle on plain HTTP.
env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE \
    PATH="$venv/bin:$PATH" REDCLOUD_BIN="$REDCLOUD_BIN" HOME="$work" \
    S3_MULTIPART_EXPIRY_SECONDS="${EXPIRY%s}" UPLOAD_MAX_BYTES="$UPLOAD_MAX_BYTES" \
    "$venv/bin/python" tests/s3/clients_test.py \
    "http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))" \
    "http://127.0.0.1:$s3_port" "http://127.0.0.1:$((s3_port + 1))" "$work"
