"""Sealed secrets, a feature of its own: values sealed for git, opened at apply time.

- `format`: the kubeseal-compatible byte format (hybrid RSA-OAEP + AES-GCM,
  strict / namespace-wide / cluster-wide scopes), sealing and unsealing;
- `keys`: the sealing keys kept as Secrets in the controllers' namespace,
  created at start and renewed (`KeyManager`), and key files for recovery;
- `cli`: `headwater seal` and `headwater keys`.

The kustomize controller's decrypt step is its only adapter.
"""

from __future__ import annotations

__all__ = ["cli", "format", "keys"]
