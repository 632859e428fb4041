"""Typed keys: role separation, secret hygiene, signatures, sizes."""

from __future__ import annotations

import nacl.public
import nacl.signing
import pytest

from p2ptchap.core.errors import DecodeError, VerificationError, VerificationFailure
from p2ptchap.core.keys import (
    AccountKey,
    AccountSecret,
    AuthorityKey,
    AuthoritySecret,
    DeviceKey,
    DeviceSecret,
    ExchangeKey,
    ExchangeSecret,
    PublicKey,
    Rng,
    SecretKey,
)

RAW = bytes(range(32))
PUBLIC_CLASSES: list[type[PublicKey]] = [AuthorityKey, AccountKey, DeviceKey, ExchangeKey]
SECRET_CLASSES: list[type[SecretKey]] = [
    AuthoritySecret,
    AccountSecret,
    DeviceSecret,
    ExchangeSecret,
]


def test_same_bytes_in_different_roles_are_not_equal() -> None:
    assert AccountKey(RAW) != DeviceKey(RAW)
    assert DeviceKey(RAW) != AccountKey(RAW)
    assert AuthorityKey(RAW) != AccountKey(RAW)
    assert ExchangeKey(RAW) != DeviceKey(RAW)
    assert len({cls(RAW) for cls in PUBLIC_CLASSES}) == len(PUBLIC_CLASSES)


def test_same_bytes_in_the_same_role_are_equal_and_hash_alike() -> None:
    assert AccountKey(RAW) == AccountKey(bytearray(RAW))
    assert hash(AccountKey(RAW)) == hash(AccountKey(RAW))
    assert AccountKey(RAW) != AccountKey(bytes(31) + b"\x01")
    assert AccountKey(RAW) != RAW


def test_fingerprints_and_key_ids_differ_across_roles() -> None:
    fingerprints = {cls(RAW).fingerprint() for cls in PUBLIC_CLASSES}
    key_ids = {cls(RAW).key_id for cls in PUBLIC_CLASSES}
    assert len(fingerprints) == len(PUBLIC_CLASSES)
    assert len(key_ids) == len(PUBLIC_CLASSES)


def test_fingerprint_format() -> None:
    key = AccountKey(RAW)
    groups = key.fingerprint().split(" ")
    assert len(groups) == 8
    assert all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)
    assert key.short_id() == "".join(groups)[:16].lower()
    assert len(key.key_id) == 16
    assert key.fingerprint() in repr(key)


def test_secret_equality_is_typed() -> None:
    assert AccountSecret(RAW) == AccountSecret(RAW)
    assert AccountSecret(RAW) != DeviceSecret(RAW)
    assert AccountSecret(RAW) != AccountSecret(bytes(32))


@pytest.mark.parametrize("cls", SECRET_CLASSES)
def test_secret_repr_hides_the_bytes(cls: type[SecretKey]) -> None:
    seed = bytes.fromhex("a5" * 32)
    secret = cls(seed)
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "a5a5" not in text.lower()
        assert "<secret>" in text
        assert repr(seed) not in text
    assert secret.secret_bytes() == seed


def test_generate_uses_the_rng(rng: Rng) -> None:
    calls: list[int] = []

    def counting(n: int) -> bytes:
        calls.append(n)
        return b"\x07" * n

    assert AccountSecret.generate(counting) == AccountSecret(b"\x07" * 32)
    assert calls == [32]
    assert AccountSecret.generate(rng) != AccountSecret.generate(rng)


def test_public_keys_have_their_role() -> None:
    assert type(AuthoritySecret(RAW).public_key()) is AuthorityKey
    assert type(AccountSecret(RAW).public_key()) is AccountKey
    assert type(DeviceSecret(RAW).public_key()) is DeviceKey
    assert type(ExchangeSecret(RAW).public_key()) is ExchangeKey


def test_public_keys_match_libsodium() -> None:
    assert bytes(AccountSecret(RAW).public_key()) == bytes(nacl.signing.SigningKey(RAW).verify_key)
    assert bytes(ExchangeSecret(RAW).public_key()) == bytes(nacl.public.PrivateKey(RAW).public_key)


def test_sign_and_verify(rng: Rng) -> None:
    secret = DeviceSecret.generate(rng)
    signature = secret.sign(b"hello")
    assert len(signature) == 64
    secret.public_key().verify(b"hello", signature)
    # Independent check with libsodium directly.
    nacl.signing.VerifyKey(bytes(secret.public_key())).verify(b"hello", signature)


def test_verify_rejects_other_message_key_and_signature(rng: Rng) -> None:
    secret = DeviceSecret.generate(rng)
    other = DeviceSecret.generate(rng)
    signature = secret.sign(b"hello")
    bad_cases = [
        (secret.public_key(), b"hellp", signature),
        (other.public_key(), b"hello", signature),
        (secret.public_key(), b"hello", bytes([signature[0] ^ 1]) + signature[1:]),
        (secret.public_key(), b"hello", signature[:-1]),
        (secret.public_key(), b"hello", signature + b"\x00"),
        (secret.public_key(), b"hello", b""),
    ]
    for key, message, sig in bad_cases:
        with pytest.raises(VerificationError) as info:
            key.verify(message, sig)
        assert info.value.reason is VerificationFailure.BAD_SIGNATURE


@pytest.mark.parametrize("cls", PUBLIC_CLASSES + SECRET_CLASSES)
@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), bytes(64), "0" * 32, None, 32])
def test_wrong_sizes_and_types_raise_decode_error(
    cls: type[PublicKey] | type[SecretKey], raw: object
) -> None:
    with pytest.raises(DecodeError):
        cls(raw)  # type: ignore[arg-type]
