"""spec.kubeConfig.secretRef: a release in another cluster.

The kubeconfig comes from a Secret in the HelmRelease's namespace (key
`value` unless `secretRef.key` says), read on every reconcile as the
Kustomization reads its own, so rotated credentials apply at once. Two things
use it:

- the `ClientPool` builds (and keeps, per Secret text) the API client that
  reads helm's storage labels, writes CRDs and checks drift in that cluster;
- helm itself takes a file: `kubeconfig_file` writes the text into a private
  directory (0700, the file 0600) that lives for one reconcile and is
  removed after it, whatever happens.

Drift there is checked at each reconcile (`interval`); the watch that heals a
`kubectl delete` within seconds watches the controller's own cluster only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.clients import SECRET_FIELD, IdentityNotFound, SecretKeyRef

KUBECONFIG_PREFIX = "headwater-helm-kubeconfig-"


async def read_kubeconfig(read_secret: kube.SecretReader, namespace: str, ref: SecretKeyRef) -> str:
    """The kubeconfig text; IdentityNotFound names the Secret and key when either is missing."""
    data = await read_secret(namespace, ref.name)
    if data is None or ref.key not in data:
        raise IdentityNotFound(
            f"{SECRET_FIELD}: key '{ref.key}' of Secret '{namespace}/{ref.name}' not found"
        )
    return data[ref.key].decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def kubeconfig_file(text: str) -> AsyncIterator[Path]:
    """`text` as a kubeconfig file only this process can read, removed on exit."""
    directory = Path(tempfile.mkdtemp(prefix=KUBECONFIG_PREFIX))  # mode 0700
    try:
        path = directory / "kubeconfig"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
