"""The split of a package `__init__` into lazy re-exports and the rest of its code."""

from __future__ import annotations

from controllers.toolkit.lazyimport import reexports


def test_reexports_become_names_and_the_rest_stays() -> None:
    source = (
        '"""Doc."""\n'
        "from __future__ import absolute_import\n"
        '__version__ = "1.0"\n'
        "from kubernetes.client.models.v1_pod import V1Pod\n"
        "from kubernetes.client.api_client import ApiClient as Client\n"
        "from . import config\n"
        "from .rest import RESTClient\n"
    )
    split = reexports("kubernetes.client", source)
    assert split is not None
    names, rest = split
    assert names == {
        "V1Pod": ("kubernetes.client.models.v1_pod", "V1Pod"),
        "Client": ("kubernetes.client.api_client", "ApiClient"),
        "config": ("kubernetes.client.config", None),
        "RESTClient": ("kubernetes.client.rest", "RESTClient"),
    }
    # Line numbers are kept, the version assignment and the future import run.
    kept = rest.splitlines()[1:3]
    assert kept == ["from __future__ import absolute_import", '__version__ = "1.0"']
    assert len(rest.splitlines()) == len(source.splitlines())


def test_any_other_import_statement_keeps_the_package_eager() -> None:
    assert reexports("pkg", "import os\nfrom .a import B\n") is None
    assert reexports("pkg", "from .a import (\n    B,\n)\n") is None
    assert reexports("pkg", "from .a import B, C\n") is None
    assert reexports("pkg", "try:\n    from .a import B\nexcept ImportError:\n    pass\n") is None


def test_relative_imports_resolve_against_the_package() -> None:
    split = reexports("a.b", "from .. import c\nfrom ..d import E\n")
    assert split is not None
    assert split[0] == {"c": ("a.c", None), "E": ("a.d", "E")}
