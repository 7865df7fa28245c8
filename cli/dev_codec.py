"""``runyard dev``'s encrypted history: a key generated into the data dir when none is
configured, and the Temporal UI started with the API's codec server as its codec
endpoint, so the UI shows the runs decrypted (``api/codec_server.py``).

The UI of the dev server has no login, so it cannot pass a token: under ``runyard dev``
the codec server answers callers on a loopback address without one
(``RUNYARD_CODEC_LOOPBACK_OPEN``), and browsers only from the UI's origins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from runyard.encryption import DEV_KEYS_FILE, load_or_create_dev_keys
from runyard.settings import Settings


@dataclass(frozen=True)
class DevCodec:
    endpoint: str  # what the UI calls: <endpoint>/decode
    keys_file: Path | None  # set when dev made or read its own key
    overrides: dict[str, Any] = field(default_factory=dict)  # for the children's settings


def dev_codec(
    settings: Settings, data_dir: Path, *, host: str, port: int, ui_ip: str, ui_port: int
) -> DevCodec:
    overrides: dict[str, Any] = {}
    keys_file = None
    if settings.payload_keys is None:
        overrides["payload_keys"] = SecretStr(load_or_create_dev_keys(data_dir))
        keys_file = data_dir.resolve() / DEV_KEYS_FILE
    if "RUNYARD_CODEC_LOOPBACK_OPEN" not in os.environ:
        overrides["codec_loopback_open"] = True
    if "RUNYARD_CODEC_ORIGINS" not in os.environ:
        hosts = dict.fromkeys([_url_host(ui_ip), "127.0.0.1", "localhost"])
        overrides["codec_origins"] = ",".join(f"http://{h}:{ui_port}" for h in hosts)
    # The browser calls it: a wildcard bind is reached on loopback.
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return DevCodec(f"http://{_url_host(reach)}:{port}/codec", keys_file, overrides)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
