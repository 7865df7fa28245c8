"""The registration-time SSRF check shared by callbackUrl, watchers and webhooks."""

from __future__ import annotations

from api.errors import ProblemError
from runyard.settings import Settings
from runyard.ssrf import ForbiddenURL, check_url


async def allowed_callback(url: str, settings: Settings, field: str = "callbackUrl") -> str:
    try:
        await check_url(url, allow_private=settings.allow_private_callbacks)
    except ForbiddenURL as exc:
        raise ProblemError(
            422,
            "CALLBACK_URL_FORBIDDEN",
            f"{field}: {exc}",
            title="Callback URL forbidden",
            extra={"errors": [{"field": field, "message": str(exc), "code": "forbidden_address"}]},
        ) from exc
    return url
