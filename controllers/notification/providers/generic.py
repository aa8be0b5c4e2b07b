"""generic and generic-hmac: the event JSON forwarded as is.

Both send header `gotk-component: <reporting controller>` and the Secret's
`headers`; generic-hmac adds `X-Signature: sha256=<hex HMAC-SHA256(body, token)>`
over the exact bytes sent, so receivers can verify the sender.
"""

from __future__ import annotations

import hashlib
import hmac

from controllers.notification.event import FluxEvent
from controllers.notification.providers.base import ProviderConfig, ProviderConfigError
from controllers.notification.providers.http import encode_json, request

COMPONENT_HEADER = "gotk-component"
SIGNATURE_HEADER = "X-Signature"


def sign(body: bytes, key: bytes) -> str:
    """The X-Signature value for `body`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def generic_request(
    event: FluxEvent, config: ProviderConfig, *, hmac_key: bytes | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers a generic(-hmac) provider sends."""
    body = encode_json(event.to_json())
    headers = {COMPONENT_HEADER: event.reporting_controller}
    headers.update(config.headers)
    if hmac_key is not None:
        headers[SIGNATURE_HEADER] = sign(body, hmac_key)
    return body, headers


class GenericSender:
    def __init__(self, config: ProviderConfig, *, signed: bool) -> None:
        if not config.address:
            raise ProviderConfigError(
                f"{config.type} provider needs spec.address or 'address' in spec.secretRef"
            )
        if signed and not config.token:
            raise ProviderConfigError(
                "generic-hmac provider needs the HMAC key as 'token' in spec.secretRef"
            )
        self.config = config
        self.key = config.token.encode() if signed else None

    async def send(self, event: FluxEvent) -> None:
        body, headers = generic_request(event, self.config, hmac_key=self.key)
        await request("POST", self.config.address, self.config, body=body, headers=headers)
