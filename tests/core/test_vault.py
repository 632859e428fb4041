"""Passphrase-sealed boxes: round trip, wrong passphrase, crafted and tampered boxes."""

from __future__ import annotations

import pytest

from p2ptchap.core import codec, vault
from p2ptchap.core.errors import DecodeError, UsageError, WrongPassphrase
from p2ptchap.core.keys import Rng
from tests.conftest import assert_every_flip_rejected

SECRET = bytes(range(32))
PASSPHRASE = "correct horse battery staple"


def seal(rng: Rng, plaintext: bytes = SECRET, passphrase: str = PASSPHRASE) -> bytes:
    return vault.seal(plaintext, passphrase, rng, cost=vault.MINIMUM)


def fields(box: bytes) -> dict[codec.Key, codec.Value]:
    return codec.expect_map(codec.decode(box), "box")


def test_round_trip(rng: Rng) -> None:
    for plaintext in (SECRET, b"", b"x" * 10_000):
        assert vault.open_sealed(seal(rng, plaintext), PASSPHRASE) == plaintext


def test_unicode_passphrase(rng: Rng) -> None:
    box = seal(rng, passphrase="mot de passe très sûr ✓")
    assert vault.open_sealed(box, "mot de passe très sûr ✓") == SECRET


def test_box_layout(rng: Rng) -> None:
    box = fields(seal(rng))
    assert set(box) == {"v", "kdf", "ops", "mem", "salt", "nonce", "ct"}
    assert box["v"] == 1
    assert box["kdf"] == "argon2id"
    assert box["ops"] == vault.MINIMUM.ops
    assert box["mem"] == vault.MINIMUM.mem
    assert isinstance(box["salt"], bytes) and len(box["salt"]) == vault.SALT_SIZE
    assert isinstance(box["nonce"], bytes) and len(box["nonce"]) == vault.NONCE_SIZE
    assert isinstance(box["ct"], bytes) and SECRET not in box["ct"]


def test_fresh_salt_and_nonce_each_time(rng: Rng) -> None:
    first, second = fields(seal(rng)), fields(seal(rng))
    assert first["salt"] != second["salt"]
    assert first["nonce"] != second["nonce"]
    assert first["ct"] != second["ct"]


@pytest.mark.parametrize(
    "wrong", ["", "correct horse battery stapl", "Correct horse battery staple"]
)
def test_wrong_passphrase(rng: Rng, wrong: str) -> None:
    with pytest.raises(WrongPassphrase) as info:
        vault.open_sealed(seal(rng), wrong)
    assert "passphrase" in info.value.render().lower()


def test_empty_passphrase_is_refused(rng: Rng) -> None:
    with pytest.raises(UsageError) as info:
        vault.seal(SECRET, "", rng, cost=vault.MINIMUM)
    assert "empty" in info.value.render()


def _craft(box: bytes, **override: codec.Value) -> bytes:
    body = fields(box)
    for key, value in override.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    return codec.encode(body)


@pytest.mark.parametrize(
    "override",
    [
        {"ops": 17},
        {"ops": 1 << 40},
        {"mem": (1 << 30) + 1},
        {"mem": 1 << 40},
        {"ops": 0},
        {"mem": 1024},
        {"ops": -1},
        {"v": 2},
        {"kdf": "scrypt"},
        {"salt": b"\x00" * 15},
        {"nonce": b"\x00" * 23},
        {"ct": "text"},
        {"ct": None},
        {"mem": None},
        {"extra": 1},
    ],
)
def test_crafted_boxes_are_refused_before_key_derivation(
    rng: Rng, override: dict[str, codec.Value]
) -> None:
    with pytest.raises(DecodeError):
        vault.open_sealed(_craft(seal(rng), **override), PASSPHRASE)


def test_cost_parameters_are_authenticated(rng: Rng) -> None:
    # In range, so accepted as a box, but not the parameters it was sealed with.
    box = seal(rng)
    for override in ({"ops": vault.MINIMUM.ops + 1}, {"mem": vault.MINIMUM.mem * 2}):
        with pytest.raises(WrongPassphrase):
            vault.open_sealed(_craft(box, **override), PASSPHRASE)


@pytest.mark.parametrize("data", [b"", b"\x00", b"garbage", codec.encode([1]), codec.encode({})])
def test_not_a_box(data: bytes) -> None:
    with pytest.raises(DecodeError):
        vault.open_sealed(data, PASSPHRASE)


def test_tamper(rng: Rng) -> None:
    box = seal(rng, b"sixteen byte key")
    assert_every_flip_rejected(
        box, lambda b: vault.open_sealed(b, PASSPHRASE), (WrongPassphrase, DecodeError)
    )


def test_short_ciphertext_and_undecodable_passphrase_are_typed_errors(rng: Rng) -> None:
    box = codec.decode(vault.seal(b"secret", "pass", rng, vault.MINIMUM))
    assert isinstance(box, dict)
    with pytest.raises(DecodeError):
        vault.open_sealed(codec.encode({**box, "ct": b"short"}), "pass")
    with pytest.raises(UsageError):
        vault.seal(b"secret", "caf\udce9", rng, vault.MINIMUM)  # surrogate-escaped byte


def test_passphrase_is_compared_after_nfc_normalisation(rng: Rng) -> None:
    composed, decomposed = "caf\u00e9 crise", "cafe\u0301 crise"
    box = vault.seal(b"secret", composed, rng, vault.MINIMUM)
    assert vault.open_sealed(box, decomposed) == b"secret"
