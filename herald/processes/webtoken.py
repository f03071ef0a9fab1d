"""The bearer token of the web pages that read ClickHouse (HERALD_WEB_TOKEN).

The token is a secret: it is compared in constant time and never logged, echoed or printed
(the settings hold it as a SecretStr, which prints as stars).
"""

from __future__ import annotations

import hmac

from herald.config import Settings

REFUSED = ("unauthorized: this Herald process requires `Authorization: Bearer <token>`;"
           " set HERALD_WEB_TOKEN to the token it was started with")  # fmt: skip


def headers(settings: Settings) -> dict[str, str]:
    """What a client sends: the token when one is configured."""
    if settings.web_token is None:
        return {}
    return {"Authorization": f"Bearer {settings.web_token.get_secret_value()}"}


def authorized(settings: Settings, authorization: str | None) -> bool:
    """Whether a request with this Authorization header may read (always, without a token)."""
    if settings.web_token is None:
        return True
    expected = f"Bearer {settings.web_token.get_secret_value()}".encode()
    return hmac.compare_digest((authorization or "").encode(), expected)
