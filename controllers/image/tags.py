"""The scanned tags of every ImageRepository, kept in memory (Flux keeps them in a database).

Status holds only the last ten tags, so policies read the full list from here. The
store is rebuilt by scanning: after a restart every ImageRepository is reconciled
first (first seen), and a policy whose repository has no tags here yet waits for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from controllers.toolkit.runtime.reconciler import ObjectRef


@dataclass(frozen=True)
class ScannedTags:
    canonical_image: str
    tags: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.tags)).encode()).hexdigest()


class TagStore:
    def __init__(self) -> None:
        self._tags: dict[ObjectRef, ScannedTags] = {}

    def put(self, ref: ObjectRef, canonical_image: str, tags: Sequence[str]) -> bool:
        """Store the scan; True when the tag set changed."""
        new = ScannedTags(canonical_image, tuple(tags))
        old = self._tags.get(ref)
        self._tags[ref] = new
        return old is None or old.digest != new.digest or old.canonical_image != canonical_image

    def get(self, ref: ObjectRef) -> ScannedTags | None:
        return self._tags.get(ref)

    def drop(self, ref: ObjectRef) -> None:
        self._tags.pop(ref, None)
