"""Reading any cluster object by kind, through API discovery (for tree and trace).

Kinds are looked up the way kubectl does: by Kind, plural, singular or short
name, in any case, optionally qualified by group (`deployment.apps`); the
group's preferred version wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import (
    NotFoundError,
    ResourceNotFoundError,
    ResourceNotUniqueError,
)
from kubernetes.dynamic.resource import Resource, ResourceList

from controllers.commands import common
from controllers.commands.common import CliError, Session


def _resources(session: Session) -> Iterator[Resource]:
    for found in session.dynamic.resources:
        for resource in found if isinstance(found, list) else [found]:
            if isinstance(resource, ResourceList) or "/" in str(resource.name or ""):
                continue
            yield resource


def resolve_kind(session: Session, text: str) -> Resource:
    """The API resource `text` names (`deploy`, `Deployment`, `deployments.apps`)."""
    word, _, group = text.partition(".")
    wanted = word.lower()
    matches = []
    for resource in _resources(session):
        names = {
            str(resource.kind).lower(),
            str(resource.name or "").lower(),
            str(resource.singular_name or "").lower(),
            *(str(short).lower() for short in resource.short_names or ()),
        }
        if wanted in names and (not group or resource.group == group):
            matches.append(resource)
    if not matches:
        raise CliError(f"the server has no resource type {text!r}", common.EXIT_USAGE)
    preferred = [r for r in matches if r.preferred] or matches
    # Core and apps kinds before look-alikes from other groups (kubectl's order, roughly).
    preferred.sort(key=lambda r: (r.group not in ("", "apps", "batch"), r.group))
    return preferred[0]


def resource_for(session: Session, api_version: str, kind: str) -> Resource | None:
    try:
        resource: Resource = session.dynamic.resources.get(api_version=api_version, kind=kind)
    except (ResourceNotFoundError, ResourceNotUniqueError):
        return None
    return resource


def get_object(
    session: Session, resource: Resource, namespace: str, name: str
) -> dict[str, Any] | None:
    """The live object as a plain dict, or None when it does not exist."""
    try:
        if resource.namespaced:
            found = resource.get(name=name, namespace=namespace)
        else:
            found = resource.get(name=name)
    except NotFoundError:
        return None
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise common.api_error(exc, f"reading {resource.kind} {namespace}/{name}") from None
    result: dict[str, Any] = found.to_dict()
    return result
