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
source tests/lib/local-cluster.sh

need_commands rclone=rclone s3cmd=s3cmd curl=curl
venv="$repo/target/s3-venv"
python_venv "$venv" 'boto3>=1.34,<2' 'awscli>=1.32,<2'
redcloud_binary
scratch_and_artifacts s3

# Multipart uploads left unfinished this long are aborted; the suite checks that it happens.
EXPIRY=60s
# Room for the 100 MiB copy, and a limit multipart uploads must keep too.
UPLOAD_MAX_BYTES=$((101 * 1024 * 1024))

# Two controllers on free consecutive ports for the API and two for S3.
port=$(free_port_pair 18500 19000)
s3_port=$(free_port_pair 19500 20000)
READY_URLS=("http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))")
start_cluster --controllers 2 --chunkservers 2 --listen "127.0.0.1:$port" \
    --s3-listen "127.0.0.1:$s3_port" --s3-multipart-expiry "$EXPIRY" \
    --upload-max-bytes "$UPLOAD_MAX_BYTES" --s3-root-domain s3.test

# The environment may name a CA bundle for AWS tools; these endpoints are plain HTTP, and
# rclone refuses to start with a custom bundle on plain HTTP.
env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE \
    PATH="$venv/bin:$PATH" REDCLOUD_BIN="$REDCLOUD_BIN" HOME="$work" \
    S3_MULTIPART_EXPIRY_SECONDS="${EXPIRY%s}" UPLOAD_MAX_BYTES="$UPLOAD_MAX_BYTES" \
    "$venv/bin/python" tests/s3/clients_test.py "${READY_URLS[@]}" \
    "http://127.0.0.1:$s3_port" "http://127.0.0.1:$((s3_port + 1))" "$work"
