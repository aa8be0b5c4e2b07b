"""Typed failures of the source reconcile steps, each carrying its Flux condition reason."""

from __future__ import annotations

from controllers.toolkit.git.redact import scrub_text
from controllers.toolkit.runtime.frame import ReconcileError

GIT_OPERATION_FAILED = "GitOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
URL_INVALID = "URLInvalid"
EMPTY_GIT_REPOSITORY = "EmptyGitRepository"
VERIFICATION_ERROR = "VerificationError"
ARCHIVE_OPERATION_FAILED = "ArchiveOperationFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"


class SourceError(ReconcileError):
    """Base of every step failure; `reason` is the Flux reason to put on the condition.

    Each subclass names its reason (and whether it stalls) as class defaults, so a step
    raises `GitOperationError(message)` and the reconcile frame reports it as it is.
    The message is scrubbed once more on construction, so a credential that slipped into a
    message built by a caller (a URL with userinfo, an Authorization header) never leaves.
    """

    reason = GIT_OPERATION_FAILED
    stalled = False

    def __init__(self, message: str) -> None:
        super().__init__(self.reason, scrub_text(message), stalled=self.stalled)


class GitOperationError(SourceError):
    """A git command failed: unreachable host, missing ref, timeout, broken checkout."""

    reason = GIT_OPERATION_FAILED


class AuthenticationError(SourceError):
    """Credentials were refused or the Secret's auth data is unusable."""

    reason = AUTHENTICATION_FAILED


class URLInvalidError(SourceError):
    """spec.url is not an http(s):// or ssh:// URL git can use: retrying cannot help."""

    reason = URL_INVALID
    stalled = True


class EmptyRepositoryError(SourceError):
    """The remote repository has no refs at all."""

    reason = EMPTY_GIT_REPOSITORY


class VerificationError(SourceError):
    """A commit or tag signature is missing or does not verify with the given keys."""

    reason = VERIFICATION_ERROR


class ArchiveError(SourceError):
    """Building (or unpacking, for includes) a tarball failed."""

    reason = ARCHIVE_OPERATION_FAILED


class StorageError(SourceError):
    """Writing, locking, verifying or deleting artifacts under the storage root failed."""

    reason = STORAGE_OPERATION_FAILED


class ArtifactTooLargeError(StorageError):
    """The artifact exceeds the configured size limit; it was not stored."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"artifact is larger than the storage size limit: {size} bytes or more, "
            f"limit {limit} bytes"
        )
