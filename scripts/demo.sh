#!/usr/bin/env bash
# Set up everything, then sync the example application from a local git
# server into a local Kubernetes control plane with every headwater controller
# running: git -> GitRepository -> Kustomization -> Deployment Available.
# Ctrl-C stops the controllers and the git server; `.venv/bin/headwater
# cluster down` stops the cluster. Pass --once to stop right after the sync.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.tools/bin:$PATH"
exec .venv/bin/headwater demo "$@"
