#!/usr/bin/env bash
# Set up everything, start a local control plane, install the CRDs and run
# every headwater controller against it (Ctrl-C stops the controllers;
# `.venv/bin/headwater cluster down` stops the cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.tools/bin:$PATH"

.venv/bin/headwater cluster up
KUBECONFIG=$(.venv/bin/headwater cluster kubeconfig)
export KUBECONFIG
kubectl=$(.venv/bin/python -c 'from devcluster import build; print(build.control_plane_dir() / "kubectl")')

echo "==> installing the CRDs"
"$kubectl" apply --server-side -f crds/
"$kubectl" wait --for=condition=Established --timeout=60s crd --all >/dev/null
"$kubectl" get crds -o custom-columns=NAME:.metadata.name --no-headers | grep fluxcd.io

echo "==> running the controllers (Ctrl-C to stop)"
echo "    kubectl: $kubectl --kubeconfig $KUBECONFIG"
exec .venv/bin/headwater run all
