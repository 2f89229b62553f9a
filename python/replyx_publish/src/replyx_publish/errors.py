"""The exceptions a publish raises. Every one says whether retrying can help."""

from __future__ import annotations


class PublishError(Exception):
    """Base class: the event was not (confirmed) published."""


class PublishValidationError(PublishError, ValueError):
    """The input can never be published; fix the call. Retrying does not help.

    ``field`` names the offending input the way POST /internal/publish does (``dialog_id``,
    ``audience.1``, ``data.items.2``; empty for the body as a whole) and ``str(err)`` is the same
    ``"<field>: <reason>"`` sentence the gateway answers with 400.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class NotPublishedError(PublishError):
    """Redis (or the gateway) did not confirm the publish: timeout, connection lost, refused.

    The event may or may not have been stored. Retrying with the same ``idempotency_key`` is
    safe: an event stored by the first attempt is answered again, never published twice.
    """


class LibraryNotLoadedError(NotPublishedError):
    """The replyx function library is not in Redis and this client could not load it."""


class PublishAuthError(PublishError):
    """POST /internal/publish refused the X-Publish-Key (401): fix the key, retrying does not help."""
