"""Publishing over HTTP: ``POST /internal/publish`` on the gateway port (stdlib only).

For backends that prefer one HTTP call to a Redis connection. The input is validated and encoded
here first, exactly as the Redis publishers do, so a bad call fails before the network.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Optional, Sequence

from .body import publish_input
from .call import PublishResult
from .encoding import plain_data
from .errors import NotPublishedError, PublishAuthError, PublishValidationError
from .publisher import DEFAULT_TIMEOUT_S

#: The gateway's publish path (nginx does not route /internal/: call the gateway port directly).
PUBLISH_PATH = "/internal/publish"


def _reason(raw: bytes) -> str:
    try:
        return str(json.loads(raw.decode("utf-8")).get("error", ""))
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:200]


class HttpPublisher:
    """Publishes through a gateway's ``POST /internal/publish`` with the ``X-Publish-Key``."""

    def __init__(self, gateway_url: str, publish_key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._url = gateway_url.rstrip("/") + PUBLISH_PATH
        self._key = publish_key
        self._timeout_s = timeout_s

    def publish(
        self,
        dialog_id: int,
        type: str,
        data: Any,
        *,
        audience: Optional[Sequence[str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> PublishResult:
        """Stores and publishes one event through the gateway; same answers as :meth:`Publisher.publish`."""
        event = publish_input(dialog_id, type, data, audience, idempotency_key)
        body: dict = {"dialog_id": event.dialog_id, "type": event.type, "data": plain_data(event.data)}
        if audience is not None:
            body["audience"] = list(event.audience)
        if event.idempotency_key is not None:
            body["idempotency_key"] = event.idempotency_key
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
        request = urllib.request.Request(
            self._url,
            data=payload,
            method="POST",
            headers={"content-type": "application/json", "x-publish-key": self._key},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as res:
                answer = json.loads(res.read().decode("utf-8"))
                return PublishResult(str(answer["id"]), bool(answer.get("duplicate", False)))
        except urllib.error.HTTPError as err:
            reason = _reason(err.read())
            if err.code == 400:
                field, sep, rest = reason.partition(": ")
                # "Unrecognized key: ..." and "body must be JSON: ..." concern the body as a whole.
                if sep and " " not in field:
                    raise PublishValidationError(field, rest) from None
                raise PublishValidationError("", reason) from None
            if err.code == 413:
                raise PublishValidationError("", reason or "body larger than the gateway's PUBLISH_MAX_BYTES") from None
            if err.code == 401:
                raise PublishAuthError(f"the gateway refused X-Publish-Key (401): {reason}; set the gateway's PUBLISH_KEY") from None
            raise NotPublishedError(f"gateway answered {err.code}: {reason}") from err
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
            raise NotPublishedError(f"gateway not reached or no answer within {self._timeout_s}s: {err}") from err
