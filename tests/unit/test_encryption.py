"""The payload codec (runyard/encryption.py): AES-GCM per payload, the first key encrypts
and every key decrypts, plain payloads pass through, failure messages are encoded, and a
malformed RUNYARD_PAYLOAD_KEYS is refused without quoting key material."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from runyard.encryption import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadKeyError,
    PayloadKeys,
    UnknownKeyError,
    data_converter,
    data_converter_for,
    new_key_spec,
)
from runyard.settings import Settings
from workflows.payloads import AnswerRequest


def key(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def codec(spec: str) -> EncryptionCodec:
    return EncryptionCodec(PayloadKeys.parse(spec))


async def test_a_payload_round_trips_and_its_bytes_are_sealed() -> None:
    c = codec(f"k1:{key()}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"content":"the secret"}')
    [sealed] = await c.encode([plain])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"k1"
    assert b"secret" not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()  # the metadata is sealed too
    assert await c.decode([sealed]) == [plain]
    [again] = await c.encode([plain])
    assert again.data != sealed.data  # a fresh nonce each time


async def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    k1, k2 = key(), key(16)
    old, rotated = codec(f"k1:{k1}"), codec(f"k2:{k2}, k1:{k1}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    [by_old] = await old.encode([plain])
    [by_new] = await rotated.encode([plain])
    assert by_new.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([by_old, by_new]) == [plain, plain]
    with pytest.raises(UnknownKeyError, match="'k2'"):
        await old.decode([by_new])
    # The codec server's decode leaves what it cannot read as it came.
    assert old.decode_known([by_new, by_old]) == [by_new, plain]


async def test_plain_payloads_pass_and_damage_is_detected() -> None:
    c = codec(f"k1:{key()}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    assert await c.decode([plain]) == [plain]
    [sealed] = await c.encode([plain])
    damaged = Payload()
    damaged.CopyFrom(sealed)
    damaged.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(InvalidTag):
        await c.decode([damaged])
    assert c.decode_known([damaged]) == [damaged]
    other = codec(f"k1:{key()}")  # same id, another key
    assert other.decode_known([sealed]) == [sealed]


async def test_the_converter_encrypts_values_and_failure_messages() -> None:
    conv = data_converter_for(PayloadKeys.parse(f"k1:{key()}"))
    [payload] = await conv.encode([AnswerRequest(content="the prompt")])
    assert b"the prompt" not in payload.SerializeToString()
    assert await conv.decode([payload], [AnswerRequest]) == [AnswerRequest(content="the prompt")]
    failure = Failure()
    await conv.encode_failure(ApplicationError("token sk-123 leaked", type="X"), failure)
    assert b"sk-123" not in failure.SerializeToString()
    back = await conv.decode_failure(failure)
    assert "sk-123" in str(back)


def test_without_keys_nothing_changes() -> None:
    assert data_converter(Settings()) is pydantic_data_converter
    conv = data_converter(Settings(payload_keys=SecretStr(new_key_spec("dev"))))
    assert isinstance(conv.payload_codec, EncryptionCodec)


@pytest.mark.parametrize(
    "spec, why",
    [
        ("", "names no key"),
        ("k1", "'<id>:<base64 key>'"),
        (f"bad id:{key()}", "'<id>:<base64 key>'"),
        (f"k1:{key()},k1:{key()}", "twice"),
        ("k1:not*base64", "16, 24 or 32"),
        (f"k1:{key(20)}", "16, 24 or 32"),
    ],
)
def test_malformed_keys_are_refused_without_their_material(
    spec: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PayloadKeyError, match=why) as caught:
        PayloadKeys.parse(spec)
    monkeypatch.setenv("RUNYARD_PAYLOAD_KEYS", spec)
    with pytest.raises(ValidationError) as invalid:
        Settings()
    for part in spec.replace(",", ":").split(":")[1::2]:
        assert not part or part not in str(caught.value)
        assert not part or part not in str(invalid.value)  # nor where pydantic says it


def test_url_safe_keys_and_generated_keys_parse() -> None:
    raw = os.urandom(32)
    keys = PayloadKeys.parse(f"a:{base64.urlsafe_b64encode(raw).decode().rstrip('=')}")
    assert keys.secrets["a"] == raw
    spec = new_key_spec("dev-1")
    assert PayloadKeys.parse(spec).current == "dev-1"


def test_codec_origins_must_be_exact_origins() -> None:
    Settings(codec_origins="http://127.0.0.1:8233, https://ui.example.com")
    for bad in ("127.0.0.1:8233", "https://ui.example.com/", "ftp://x"):
        with pytest.raises(ValidationError):
            Settings(codec_origins=bad)
