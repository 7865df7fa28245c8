"""The registration-time SSRF check shared by callbackUrl, watchers and webhooks: the
core's (``runyard.runs.checks``); ``AddressForbidden`` answers 422 ``CALLBACK_URL_FORBIDDEN``."""

from __future__ import annotations

from runyard.runs.checks import check_address as allowed_callback

__all__ = ["allowed_callback"]
