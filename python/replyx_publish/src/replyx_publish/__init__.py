"""Publish events to replyx-stack's WebSocket gateway from Python.

``Publisher`` (sync) and ``AsyncPublisher`` (asyncio) store and publish through Redis with the
gateway's ``replyx`` function library; ``HttpPublisher`` posts to ``/internal/publish``. All three
validate and encode exactly like the TypeScript publisher (test/fixtures/publish-conformance.json).
"""

from .aio import AsyncPublisher
from .body import AUDIENCES, EVENT_TYPE, PublishInput, parse_publish_body, publish_input
from .call import HistorySettings, PublishResult
from .encoding import encode_data
from .errors import LibraryNotLoadedError, NotPublishedError, PublishAuthError, PublishError, PublishValidationError
from .http import HttpPublisher
from .publisher import DEFAULT_TIMEOUT_S, Publisher

__all__ = [
    "AUDIENCES",
    "AsyncPublisher",
    "DEFAULT_TIMEOUT_S",
    "EVENT_TYPE",
    "HistorySettings",
    "HttpPublisher",
    "LibraryNotLoadedError",
    "NotPublishedError",
    "PublishAuthError",
    "PublishError",
    "PublishInput",
    "PublishResult",
    "PublishValidationError",
    "Publisher",
    "encode_data",
    "parse_publish_body",
    "publish_input",
]
