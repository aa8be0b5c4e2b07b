#!/usr/bin/env bash
# Set up everything headwater needs on a fresh machine, idempotently:
# system packages, .venv with the pinned Python dependencies, the control
# plane built from Kubernetes' own Go modules, kustomize + helm in .tools/bin, and
# the tests' flux and oras CLIs (built from their Go modules, cached by version).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

# System packages the tests' real servers need (git http-backend, sshd, gpg, an OCI
# registry and htpasswd for its basic-auth variant), and the browser the dashboard's
# tests drive (Debian's chromium; Playwright never downloads one).
missing=()
command -v git >/dev/null || missing+=(git)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v gpg >/dev/null || missing+=(gnupg)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The image built from Debian's packages (devcluster/image.py) and the runtime its test uses.
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v umoci >/dev/null || missing+=(umoci)
command -v buildah >/dev/null || missing+=(buildah)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
  else
    echo "error: Go is needed to build the control plane and tools, and 'go' is not on PATH" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: headwater needs Python 3.11 or newer ($python is $("$python" --version))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
# Reinstall only when the pinned dependencies changed.
stamp=.venv/.headwater-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip==26.3 setuptools==84.2.1
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

say "building the control plane and tools (cached by version after the first run)"
.venv/bin/headwater cluster build --tools
