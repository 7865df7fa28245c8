"""Encrypted workflow history: a ``PayloadCodec`` that encrypts every Temporal payload
with AES-GCM (``RUNYARD_PAYLOAD_KEYS``).

A run's workflow history holds what its clients and activities passed: the prompt (the
workflow's summary), answers, messages, error messages that may quote the run's ``env``.
With ``RUNYARD_PAYLOAD_KEYS=k2:<base64>,k1:<base64>`` every client Runyard builds (the
API, the worker, the CLI, the tests' workers: ``runyard/temporal.py``) encodes payloads
with the first key and decodes with any of them, so a key is rotated by putting a new
one first and keeping the old ones while histories written with them live. Failure
messages and stack traces move into an encoded payload too
(``DefaultFailureConverterWithEncodedAttributes``). Search attributes are not payloads
of the codec: they stay readable, so the Temporal UI still lists and filters runs.

The format is the one of Temporal's encryption samples (Python, Go, TypeScript):
metadata ``encoding: binary/encrypted`` and ``encryption-key-id: <id>``, data =
12-byte random nonce + AES-GCM(serialized payload). A payload without that encoding
passes through decoding untouched: histories written before encryption was turned on
replay and read as before. The codec server (``api/codec_server.py``) serves the same
codec to the Temporal UI and CLI.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

if TYPE_CHECKING:
    from runyard.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = (16, 24, 32)  # AES-128, AES-192, AES-256
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PayloadKeyError(ValueError):
    """``RUNYARD_PAYLOAD_KEYS`` is malformed (the message never quotes key material)."""


class UnknownKeyError(ValueError):
    """A payload was encrypted with a key this process was not given."""


@dataclass(frozen=True)
class PayloadKeys:
    """The keys by id, in the order given: the first encrypts, every one decrypts."""

    ids: tuple[str, ...]
    secrets: dict[str, bytes]

    @property
    def current(self) -> str:
        return self.ids[0]

    @classmethod
    def parse(cls, spec: str) -> PayloadKeys:
        """``id:<base64 key>,id:<base64 key>`` (standard or URL-safe base64, 16, 24 or 32
        bytes once decoded)."""
        ids: list[str] = []
        secrets: dict[str, bytes] = {}
        for n, item in enumerate(p.strip() for p in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID_RE.match(key_id):
                raise PayloadKeyError(
                    f"RUNYARD_PAYLOAD_KEYS entry {n + 1} must be '<id>:<base64 key>' with an id "
                    "of letters, digits, '.', '_' or '-'"
                )
            if key_id in secrets:
                raise PayloadKeyError(f"RUNYARD_PAYLOAD_KEYS names key {key_id!r} twice")
            secret = _decode_key(encoded.strip())
            if secret is None or len(secret) not in KEY_BYTES:
                raise PayloadKeyError(
                    f"RUNYARD_PAYLOAD_KEYS key {key_id!r} must be the base64 of 16, 24 or 32 "
                    "random bytes (e.g. `openssl rand -base64 32`)"
                )
            ids.append(key_id)
            secrets[key_id] = secret
        if not ids:
            raise PayloadKeyError("RUNYARD_PAYLOAD_KEYS names no key")
        return cls(tuple(ids), secrets)


def _decode_key(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def new_key_spec(key_id: str) -> str:
    """A fresh AES-256 key as one ``RUNYARD_PAYLOAD_KEYS`` entry."""
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each whole serialized payload (its metadata included)."""

    def __init__(self, keys: PayloadKeys) -> None:
        self.keys = keys
        self._aead = {key_id: AESGCM(secret) for key_id, secret in keys.secrets.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Every payload in the clear; one under a key this process lacks, or that fails
        authentication, raises (a worker must not go on with a value it cannot read)."""
        return [self.decrypt(p) if is_encrypted(p) else p for p in payloads]

    def decode_known(self, payloads: Sequence[Payload]) -> list[Payload]:
        """The codec server's decode: a payload this process cannot decrypt (a key id it
        was not given, a damaged payload) is returned as it came."""
        out: list[Payload] = []
        for p in payloads:
            try:
                out.append(self.decrypt(p) if is_encrypted(p) else p)
            except (UnknownKeyError, InvalidTag, ValueError, DecodeError):
                out.append(p)
        return out

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._aead.get(key_id)
        if aead is None:
            raise UnknownKeyError(
                f"payload encrypted with key {key_id!r}, which RUNYARD_PAYLOAD_KEYS lacks"
            )
        data = payload.data
        if len(data) <= NONCE_BYTES:
            raise ValueError("encrypted payload too short")
        return Payload.FromString(aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None))


def data_converter_for(keys: PayloadKeys | None) -> DataConverter:
    """The pydantic data converter; with keys, encrypting payloads and failure messages."""
    if keys is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def payload_keys(settings: Settings) -> PayloadKeys | None:
    if settings.payload_keys is None:
        return None
    return PayloadKeys.parse(settings.payload_keys.get_secret_value())


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of every Temporal client Runyard builds."""
    return data_converter_for(payload_keys(settings))


DEV_KEYS_FILE = "payload_keys"


def load_or_create_dev_keys(data_dir: Path) -> str:
    """``runyard dev``'s keys: ``<data dir>/payload_keys`` (0600), made with one fresh
    AES-256 key the first time. Two processes starting at once agree on one file."""
    path = data_dir.resolve() / DEV_KEYS_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{DEV_KEYS_FILE}.{os.getpid()}.{token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(new_key_spec(f"dev-{token_hex(4)}") + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # fails if another process got there first
        finally:
            tmp.unlink(missing_ok=True)
    spec = path.read_text().strip()
    PayloadKeys.parse(spec)  # a damaged file says so here, not in the worker
    return spec
