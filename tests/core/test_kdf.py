"""HKDF-SHA-256: the RFC 5869 vectors, its length bounds, and an independent reference.

The reference below is written from RFC 5869 §2.2 and §2.3 alone (extract, then
expand ``T(n) = HMAC(PRK, T(n-1) | info | n)``), not from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2ptchap.core.kdf import HASH_SIZE, hkdf_sha256

MAX_LENGTH = 255 * 32


def reference_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 §2.2: ``PRK = HMAC-Hash(salt, IKM)``; no salt means HashLen zeros."""
    if not salt:
        salt = b"\x00" * 32
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def reference_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3, written as the RFC writes it: N = ceil(L/HashLen) blocks."""
    assert 0 < length <= MAX_LENGTH
    n = -(-length // 32)
    blocks = [b""]
    for i in range(1, n + 1):
        blocks.append(hmac.new(prk, blocks[-1] + info + bytes([i]), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def reference_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return reference_expand(reference_extract(salt, ikm), info, length)


# RFC 5869 Appendix A, the three SHA-256 test cases (A.1, A.2, A.3), verbatim.
RFC5869_SHA256 = [
    pytest.param(
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="A.1-basic",
    ),
    pytest.param(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f",
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
        "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="A.2-long",
    ),
    pytest.param(
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="A.3-empty-salt-info",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869_SHA256)
def test_rfc5869_vectors(ikm: str, salt: str, info: str, length: int, prk: str, okm: str) -> None:
    ikm_b, salt_b, info_b = bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info)
    # The input sizes the RFC states (22/80/22 octets of IKM and so on).
    assert len(ikm_b) in (22, 80)
    assert len(bytes.fromhex(okm)) == length
    assert hkdf_sha256(ikm_b, salt=salt_b, info=info_b, length=length) == bytes.fromhex(okm)
    # The reference agrees with the RFC on both the PRK and the OKM.
    assert reference_extract(salt_b, ikm_b) == bytes.fromhex(prk)
    assert reference_expand(bytes.fromhex(prk), info_b, length) == bytes.fromhex(okm)
    # The PRK the code uses is the RFC's: with an empty info, the first block
    # of output is T(1) = HMAC(PRK, 0x01).
    first_block = hmac.new(bytes.fromhex(prk), b"\x01", hashlib.sha256).digest()
    assert hkdf_sha256(ikm_b, salt=salt_b, length=32) == first_block


def test_rfc5869_case3_with_salt_omitted() -> None:
    """No salt, an empty salt and HashLen zero bytes are the same salt (RFC 5869 §2.2)."""
    ikm = bytes([0x0B]) * 22
    expected = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert hkdf_sha256(ikm, length=42) == expected
    assert hkdf_sha256(ikm, salt=b"", info=b"", length=42) == expected
    assert hkdf_sha256(ikm, salt=bytes(32), length=42) == expected


def test_default_length_is_one_hash() -> None:
    assert HASH_SIZE == 32
    out = hkdf_sha256(b"ikm")
    assert len(out) == 32
    assert out == reference_hkdf(b"ikm", b"", b"", 32)


@pytest.mark.parametrize("length", [0, -1, -32, MAX_LENGTH + 1, MAX_LENGTH + 32, 10**6])
def test_length_out_of_bounds_raises(length: int) -> None:
    with pytest.raises(ValueError):
        hkdf_sha256(b"ikm", salt=b"salt", info=b"info", length=length)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 65, MAX_LENGTH - 1, MAX_LENGTH])
def test_length_within_bounds(length: int) -> None:
    out = hkdf_sha256(b"ikm", salt=b"salt", info=b"info", length=length)
    assert len(out) == length
    assert out == reference_hkdf(b"ikm", b"salt", b"info", length)


def test_shorter_output_is_a_prefix_of_longer() -> None:
    longest = hkdf_sha256(b"k", info=b"i", length=MAX_LENGTH)
    for length in (1, 32, 33, 100, 4096, MAX_LENGTH):
        assert hkdf_sha256(b"k", info=b"i", length=length) == longest[:length]


def test_inputs_are_separated() -> None:
    base = hkdf_sha256(b"ikm", salt=b"salt", info=b"info")
    assert hkdf_sha256(b"ikm!", salt=b"salt", info=b"info") != base
    assert hkdf_sha256(b"ikm", salt=b"salt!", info=b"info") != base
    assert hkdf_sha256(b"ikm", salt=b"salt", info=b"info!") != base


@settings(max_examples=200, deadline=None)
@given(
    ikm=st.binary(max_size=200),
    salt=st.binary(max_size=100),
    info=st.binary(max_size=200),
    length=st.one_of(
        st.integers(1, 300),
        st.sampled_from([31, 32, 33, 63, 64, 65, MAX_LENGTH - 1, MAX_LENGTH]),
        st.integers(1, MAX_LENGTH),
    ),
)
def test_matches_reference(ikm: bytes, salt: bytes, info: bytes, length: int) -> None:
    assert hkdf_sha256(ikm, salt=salt, info=info, length=length) == reference_hkdf(
        ikm, salt, info, length
    )
