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
source tests/lib/local-cluster.sh

need_commands chromium=chromium chromedriver=chromium-driver curl=curl
venv="$repo/target/web-venv"
python_venv "$venv" 'selenium>=4.20,<5'
redcloud_binary
scratch_and_artifacts web

# Two controllers on free consecutive ports.
port=$(free_port_pair 18400 19000)
READY_URLS=("http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))")
start_cluster --controllers 2 --chunkservers 2 --listen "127.0.0.1:$port" --s3-listen 127.0.0.1:0

REDCLOUD_BIN="$REDCLOUD_BIN" REDCLOUD_CONFIG="$work/cli.json" \
    "$venv/bin/python" tests/web/app_test.py "${READY_URLS[@]}" "$artifacts"
