"""Files: the chunk layer against age's testkit, the Merkle address, round trips, names.

The chunk layer claims age's STREAM layout (C2SP age, "payload"), so the
C2SP/CCTV age testkit is its oracle: each vector gives a file key and an
age file; its payload key is derived here as age does (HKDF-SHA-256 with
the payload's 16-byte nonce as salt and ``payload`` as info) and handed to
our :func:`open_chunk`, chunk by chunk.  The Merkle tree hash is compared
with a recursive RFC 6962 §2.1 definition written below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
import re
import unicodedata
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.files import (
    CHUNK_SIZE,
    DEFAULT_MIME,
    DEFAULT_NAME,
    HASH_SIZE,
    KEY_SIZE,
    MAX_CHUNKS,
    MAX_SIZE,
    MAX_THUMBNAIL,
    SEALED_CHUNK,
    TAG_SIZE,
    ChunkError,
    Descriptor,
    Encryptor,
    check_leaves,
    chunk_count,
    chunk_nonce,
    chunk_plain_size,
    clear_reference,
    content_root,
    decrypt_chunks,
    encrypt_bytes,
    guess_mime,
    leaf_hash,
    open_chunk,
    parse_clear_reference,
    payload_key,
    safe_mime,
    safe_name,
    seal_chunk,
    sealed_size,
    tree_hash,
)
from p2ptchap.core.kdf import hkdf_sha256

VECTOR_DIR = Path(__file__).parent.parent / "vectors" / "age"
PROVENANCE = Path(__file__).parent.parent / "vectors" / "PROVENANCE.md"
PERSON = b"p2ptchap-file"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# --- the age testkit ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgeVector:
    """One testkit file: its header fields and its STREAM payload (after the header MAC)."""

    name: str
    expect: str
    payload_sha256: str
    file_key: bytes
    nonce: bytes
    stream: bytes

    def payload_key(self) -> bytes:
        """age's payload key: HKDF-SHA-256(file key, salt = nonce, info = "payload")."""
        return hkdf_sha256(self.file_key, salt=self.nonce, info=b"payload")

    def sealed_chunks(self) -> list[bytes]:
        """Cut the stream as an age reader does: 64 KiB + 16 each, the rest is the last.

        A stream that is only a nonce gives one empty chunk, which must fail.
        """
        if not self.stream:
            return [b""]
        return [self.stream[i : i + SEALED_CHUNK] for i in range(0, len(self.stream), SEALED_CHUNK)]


def load_vector(name: str) -> AgeVector:
    raw = (VECTOR_DIR / name).read_bytes()
    head, separator, body = raw.partition(b"\n\n")
    assert separator, f"{name}: no blank line after the testkit header"
    fields: dict[str, str] = {}
    for line in head.decode("ascii").splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, value)
    if fields.get("compressed") == "zlib":
        body = zlib.decompress(body)
    else:
        assert "compressed" not in fields, f"{name}: unknown compression"
    assert body.startswith(b"age-encryption.org/v1\n"), name
    # The header ends with the MAC line "--- <base64>\n"; the payload follows.
    mac_line = body.index(b"\n--- ") + 1
    payload = body[body.index(b"\n", mac_line) + 1 :]
    assert len(payload) >= 16, f"{name}: no payload nonce"
    return AgeVector(
        name=name,
        expect=fields["expect"],
        payload_sha256=fields["payload"],
        file_key=bytes.fromhex(fields["file key"]),
        nonce=payload[:16],
        stream=payload[16:],
    )


def open_age_stream(vector: AgeVector) -> tuple[bytes, int | None]:
    """Open each chunk in order with our :func:`open_chunk`: (plaintext released, failing index)."""
    key = vector.payload_key()
    chunks = vector.sealed_chunks()
    released = b""
    for index, sealed in enumerate(chunks):
        try:
            released += open_chunk(key, index, index == len(chunks) - 1, sealed)
        except ChunkError:
            return released, index
    return released, None


#: name → number of chunks (the 257 and 258 ones carry the counter past one byte).
SUCCESS_VECTORS = {
    "x25519": 1,
    "stream_empty_payload": 1,
    "stream_last_chunk_full": 1,
    "stream_two_chunks": 2,
    "stream_three_chunks": 3,
    "stream_257_chunks": 257,
    "stream_257_chunks_full": 257,
    "stream_258_chunks": 258,
}

#: name → (index of the chunk our reader refuses, whether age released that chunk anyway).
#:
#: age's reader does not know where the stream ends, so a full chunk that
#: fails to open as "not last" is tried as "last" (and the other way round)
#: and its plaintext may be released before the error; the testkit's
#: payload hash counts it.  Ours knows the chunk count beforehand and opens
#: each chunk with the one flag it must have, so it refuses such a chunk
#: outright: "True" below means the hash is of what we released plus that
#: chunk opened under the other flag.
FAILURE_VECTORS = {
    "stream_bad_tag": (0, False),
    "stream_bad_tag_second_chunk": (1, False),
    "stream_bad_tag_second_chunk_full": (1, False),
    "stream_last_chunk_empty": (1, False),
    "stream_missing_tag": (0, False),
    "stream_no_chunks": (0, False),
    "stream_no_final": (0, False),
    "stream_no_final_full": (0, True),
    "stream_no_final_two_chunks": (1, False),
    "stream_no_final_two_chunks_full": (1, True),
    "stream_short_chunk": (0, False),
    "stream_short_second_chunk": (1, False),
    "stream_trailing_garbage_short": (0, True),
    "stream_trailing_garbage_long": (0, True),
    "stream_two_final_chunks": (0, True),
    "stream_two_final_chunks_full": (0, True),
    "stream_two_final_chunks_second": (1, True),
    "stream_two_final_chunks_short": (0, False),
}


def test_vector_files_are_those_recorded_in_provenance() -> None:
    recorded = dict(
        re.findall(r"^\| `age/([a-z0-9_]+)` \| `([0-9a-f]{64})` \|$", PROVENANCE.read_text(), re.M)
    )
    on_disk = {path.name for path in VECTOR_DIR.iterdir()}
    assert on_disk == set(SUCCESS_VECTORS) | set(FAILURE_VECTORS)
    assert set(recorded) == on_disk
    for name, digest in recorded.items():
        assert hashlib.sha256((VECTOR_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("name", sorted(SUCCESS_VECTORS))
def test_age_success_vector_opens_chunk_by_chunk(name: str) -> None:
    vector = load_vector(name)
    assert vector.expect == "success"
    chunks = vector.sealed_chunks()
    assert len(chunks) == SUCCESS_VECTORS[name]
    released, failed = open_age_stream(vector)
    assert failed is None
    assert hashlib.sha256(released).hexdigest() == vector.payload_sha256
    # The encrypting direction too: sealing the plaintext again gives age's bytes.
    key = vector.payload_key()
    offset = 0
    for index, sealed in enumerate(chunks):
        plain = released[offset : offset + len(sealed) - TAG_SIZE]
        offset += len(plain)
        assert seal_chunk(key, index, index == len(chunks) - 1, plain) == sealed, index


@pytest.mark.parametrize("name", sorted(FAILURE_VECTORS))
def test_age_failure_vector_is_refused(name: str) -> None:
    vector = load_vector(name)
    assert vector.expect == "payload failure"
    failing, age_released_it = FAILURE_VECTORS[name]
    released, failed = open_age_stream(vector)
    assert failed == failing
    if age_released_it:
        chunks = vector.sealed_chunks()
        other_flag = failing != len(chunks) - 1
        extra = open_chunk(vector.payload_key(), failing, other_flag, chunks[failing])
        assert hashlib.sha256(released + extra).hexdigest() == vector.payload_sha256
    else:
        assert hashlib.sha256(released).hexdigest() == vector.payload_sha256


def test_age_vector_with_a_wrong_key_or_nonce_does_not_open() -> None:
    vector = load_vector("stream_two_chunks")
    chunks = vector.sealed_chunks()
    with pytest.raises(ChunkError):
        open_chunk(hkdf_sha256(vector.file_key, info=b"payload"), 0, False, chunks[0])
    # Chunk 1 is not chunk 0, and a non-last chunk is not a last one.
    with pytest.raises(ChunkError):
        open_chunk(vector.payload_key(), 1, False, chunks[0])
    with pytest.raises(ChunkError):
        open_chunk(vector.payload_key(), 0, True, chunks[0])


# --- the chunk layer from the spec's wording ------------------------------------------------


def test_nonce_is_an_eleven_byte_counter_and_a_last_flag() -> None:
    assert chunk_nonce(0, False) == bytes(12)
    assert chunk_nonce(0, True) == bytes(11) + b"\x01"
    assert chunk_nonce(1, False) == bytes(10) + b"\x01\x00"
    assert chunk_nonce(256, True) == bytes(9) + b"\x01\x00\x01"
    assert chunk_nonce(MAX_CHUNKS - 1, False) == bytes(8) + b"\x0f\xff\xff\x00"
    for bad in (-1, MAX_CHUNKS):
        with pytest.raises(ValueError):
            chunk_nonce(bad, False)


def test_payload_key_is_hkdf_with_our_label() -> None:
    # RFC 5869 by hand: extract with a zero salt, expand one block.
    prk = hmac.new(bytes(32), KEY, hashlib.sha256).digest()
    expected = hmac.new(prk, b"p2ptchap/1 file payload\x01", hashlib.sha256).digest()
    assert payload_key(KEY) == expected
    for bad in (bytes(16), bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            payload_key(bad)


def test_seal_chunk_is_ietf_chacha20_poly1305_without_associated_data() -> None:
    key = payload_key(KEY)
    plain = random_bytes(CHUNK_SIZE, 1)
    direct = crypto_aead_chacha20poly1305_ietf_encrypt(plain, None, bytes(10) + b"\x03\x00", key)
    assert seal_chunk(key, 3, False, plain) == direct
    last = crypto_aead_chacha20poly1305_ietf_encrypt(b"end", None, bytes(10) + b"\x04\x01", key)
    assert seal_chunk(key, 4, True, b"end") == last
    assert open_chunk(key, 4, True, last) == b"end"


def test_seal_chunk_refuses_what_the_format_forbids() -> None:
    key = payload_key(KEY)
    with pytest.raises(ValueError):
        seal_chunk(key, 0, False, b"short")  # only the last chunk may be short
    with pytest.raises(ValueError):
        seal_chunk(key, 0, True, bytes(CHUNK_SIZE + 1))
    with pytest.raises(ValueError):
        seal_chunk(key, 2, True, b"")  # only the chunk of an empty file may be empty
    assert open_chunk(key, 0, True, seal_chunk(key, 0, True, b"")) == b""


def test_open_chunk_refuses_bad_lengths_and_empty_last_chunks() -> None:
    key = payload_key(KEY)
    for sealed, last in (
        (b"", True),
        (bytes(TAG_SIZE - 1), True),
        (bytes(SEALED_CHUNK + 1), True),
        (bytes(SEALED_CHUNK - 1), False),
    ):
        with pytest.raises(ChunkError):
            open_chunk(key, 0, last, sealed)
    # An empty last chunk after full ones, built by hand since seal_chunk refuses it.
    forged = crypto_aead_chacha20poly1305_ietf_encrypt(b"", None, chunk_nonce(1, True), key)
    with pytest.raises(ChunkError):
        open_chunk(key, 1, True, forged)


# --- the Merkle address ---------------------------------------------------------------------


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32, person=PERSON).digest()


def reference_tree(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes, recursively (k = largest power of two < n)."""
    if len(hashes) == 1:
        return hashes[0]
    split = 1
    while split * 2 < len(hashes):
        split *= 2
    return blake(b"\x01" + reference_tree(hashes[:split]) + reference_tree(hashes[split:]))


def test_leaf_and_root_hashes_are_personalised_blake2b() -> None:
    assert leaf_hash(b"chunk") == blake(b"\x00chunk")
    assert leaf_hash(b"chunk") != hashlib.blake2b(b"\x00chunk", digest_size=32).digest()
    leaves = [leaf_hash(b"a"), leaf_hash(b"b")]
    size = CHUNK_SIZE + 1
    expected = blake(b"\x02" + size.to_bytes(8, "big") + blake(b"\x01" + leaves[0] + leaves[1]))
    assert content_root(size, leaves) == expected


def test_tree_hash_equals_the_recursive_definition_for_every_count_to_300() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    for count in range(1, 301):
        assert tree_hash(hashes[:count]) == reference_tree(hashes[:count]), count


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300))
def test_tree_hash_equals_the_recursive_definition(hashes: list[bytes]) -> None:
    assert tree_hash(hashes) == reference_tree(hashes)


def test_tree_shapes_by_hand() -> None:
    a, b, c, d, e = (leaf_hash(bytes([i])) for i in range(5))
    assert tree_hash([a]) == a
    assert tree_hash([a, b, c]) == blake(b"\x01" + blake(b"\x01" + a + b) + c)
    ab, cd = blake(b"\x01" + a + b), blake(b"\x01" + c + d)
    assert tree_hash([a, b, c, d, e]) == blake(b"\x01" + blake(b"\x01" + ab + cd) + e)
    with pytest.raises(ValueError):
        tree_hash([])


def test_domain_separation_between_leaves_nodes_and_roots() -> None:
    left, right = leaf_hash(b"left"), leaf_hash(b"right")
    node = tree_hash([left, right])
    # A chunk made of two leaf hashes is not the node over them ...
    assert leaf_hash(left + right) != node
    assert tree_hash([leaf_hash(left + right)]) != node
    # ... nor a chunk that spells the node's own preimage.
    assert leaf_hash(b"\x01" + left + right) != node
    assert blake(b"\x00\x01" + left + right) == leaf_hash(b"\x01" + left + right)
    # The root of a one-chunk file is neither its leaf nor a node.
    root = content_root(10, [left])
    assert root not in (left, tree_hash([left, left]), leaf_hash(b"left"))
    assert root != leaf_hash(b"\x02" + (10).to_bytes(8, "big") + left)


def test_root_binds_the_size() -> None:
    leaves = [leaf_hash(b"only")]
    roots = {content_root(size, leaves) for size in (0, 1, 2, 100, CHUNK_SIZE)}
    assert len(roots) == 5
    two = [leaf_hash(b"x"), leaf_hash(b"y")]
    assert content_root(CHUNK_SIZE + 1, two) != content_root(2 * CHUNK_SIZE, two)
    with pytest.raises(ValueError):
        content_root(CHUNK_SIZE, two)  # one chunk, two leaves
    with pytest.raises(ValueError):
        content_root(CHUNK_SIZE + 1, leaves)


def test_check_leaves() -> None:
    size = 3 * CHUNK_SIZE + 5
    root, _sealed, leaves = encrypt_bytes(KEY, random_bytes(size))
    joined = b"".join(leaves)
    assert check_leaves(root, size, joined) == leaves
    for bad in (
        joined[:-HASH_SIZE],  # a leaf short
        joined + leaves[0],  # a leaf too many
        joined + b"\x00",  # not a whole number of hashes
        joined[:-1],
        b"",
        b"".join([leaves[1], leaves[0], *leaves[2:]]),  # swapped
        joined[:-1] + bytes([joined[-1] ^ 1]),  # one bit
    ):
        with pytest.raises(ChunkError):
            check_leaves(root, size, bad)
    with pytest.raises(ChunkError):
        check_leaves(bytes(32), size, joined)  # wrong root
    with pytest.raises(ChunkError):
        check_leaves(root, size + 1, joined)  # same count, other size


# --- encrypting and decrypting whole files --------------------------------------------------


def test_sizes_and_counts() -> None:
    assert [chunk_count(n) for n in (0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE)] == [
        1,
        1,
        1,
        2,
        3,
    ]
    assert sealed_size(0) == TAG_SIZE
    assert sealed_size(CHUNK_SIZE + 1) == CHUNK_SIZE + 1 + 2 * TAG_SIZE
    assert chunk_plain_size(0, 0) == 0
    assert chunk_plain_size(CHUNK_SIZE + 7, 0) == CHUNK_SIZE
    assert chunk_plain_size(CHUNK_SIZE + 7, 1) == 7
    assert chunk_plain_size(2 * CHUNK_SIZE, 1) == CHUNK_SIZE
    for size, index in ((0, 1), (CHUNK_SIZE, 1), (CHUNK_SIZE + 1, -1)):
        with pytest.raises(ValueError):
            chunk_plain_size(size, index)


def check_round_trip(data: bytes, file_key: bytes = KEY) -> list[bytes]:
    size = len(data)
    root, sealed, leaves = encrypt_bytes(file_key, data)
    assert len(sealed) == len(leaves) == chunk_count(size)
    assert [len(s) - TAG_SIZE for s in sealed] == [
        chunk_plain_size(size, i) for i in range(len(sealed))
    ]
    assert sum(map(len, sealed)) == sealed_size(size)
    assert leaves == [leaf_hash(s) for s in sealed]
    assert check_leaves(root, size, b"".join(leaves)) == leaves
    assert b"".join(decrypt_chunks(file_key, size, sealed)) == data
    return sealed


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE])
def test_round_trip(size: int) -> None:
    check_round_trip(random_bytes(size, size))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 4 * CHUNK_SIZE + 3), st.integers(0, 2**32))
def test_round_trip_random_sizes(size: int, seed: int) -> None:
    check_round_trip(random_bytes(size, seed), random_bytes(KEY_SIZE, seed + 1))


def test_encryption_is_deterministic_for_a_key_and_differs_across_keys() -> None:
    data = random_bytes(CHUNK_SIZE + 10)
    assert encrypt_bytes(KEY, data) == encrypt_bytes(KEY, data)
    assert encrypt_bytes(KEY, data)[0] != encrypt_bytes(OTHER_KEY, data)[0]


SIZE = 3 * CHUNK_SIZE + 100  # four chunks, the last one short
DATA = random_bytes(SIZE, 7)
SEALED = encrypt_bytes(KEY, DATA)[1]


def opens(sealed: list[bytes], size: int = SIZE, file_key: bytes = KEY) -> bytes:
    return b"".join(decrypt_chunks(file_key, size, sealed))


def test_truncation_extension_and_reordering_fail() -> None:
    assert opens(SEALED) == DATA
    bad_streams = [
        SEALED[:-1],  # the last chunk dropped
        SEALED[:1],
        [],
        [*SEALED, SEALED[-1]],  # a chunk too many
        [*SEALED, b""],
        [SEALED[1], SEALED[0], *SEALED[2:]],  # two full chunks swapped
        [*SEALED[:2], SEALED[3], SEALED[2]],  # the short last chunk moved up
        [SEALED[0], SEALED[0], *SEALED[2:]],  # a chunk repeated
    ]
    for stream in bad_streams:
        with pytest.raises(ChunkError):
            opens(stream)


def test_empty_file_stream_must_hold_its_one_chunk() -> None:
    sealed = check_round_trip(b"")
    assert len(sealed) == 1 and len(sealed[0]) == TAG_SIZE
    with pytest.raises(ChunkError):
        opens([], 0)
    with pytest.raises(ChunkError):
        opens([*sealed, *sealed], 0)


@pytest.mark.parametrize("chunk", range(4))
@pytest.mark.parametrize("position", [0, 50, -TAG_SIZE - 1, -TAG_SIZE, -1])
def test_a_flipped_bit_in_any_chunk_fails(chunk: int, position: int) -> None:
    tampered = bytearray(SEALED[chunk])
    tampered[position] ^= 0x80
    stream = [*SEALED[:chunk], bytes(tampered), *SEALED[chunk + 1 :]]
    with pytest.raises(ChunkError):
        opens(stream)


def test_a_chunk_from_another_file_fails() -> None:
    other = encrypt_bytes(OTHER_KEY, DATA)[1]
    for index in range(4):
        with pytest.raises(ChunkError):
            opens([*SEALED[:index], other[index], *SEALED[index + 1 :]])
    with pytest.raises(ChunkError):
        opens(SEALED, file_key=OTHER_KEY)


def test_the_size_is_checked_against_the_chunks() -> None:
    # Same chunk count, other sizes: the last chunk has the wrong length.
    for size in (SIZE - 1, SIZE + 1, 3 * CHUNK_SIZE + 1, 4 * CHUNK_SIZE):
        with pytest.raises(ChunkError):
            opens(SEALED, size)


def test_an_empty_last_chunk_after_full_chunks_is_refused() -> None:
    key = payload_key(KEY)
    data = random_bytes(CHUNK_SIZE)
    full = seal_chunk(key, 0, False, data)
    empty_last = crypto_aead_chacha20poly1305_ietf_encrypt(b"", None, chunk_nonce(1, True), key)
    # Whatever size the reader believes, the pair never opens.
    for size in (CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE):
        with pytest.raises(ChunkError):
            opens([full, empty_last], size)
    # A file of exactly 64 KiB is one full last chunk, not a full chunk and an empty one.
    assert encrypt_bytes(KEY, data)[1] == [seal_chunk(key, 0, True, data)]


def test_decryption_yields_chunks_before_the_error() -> None:
    opened = decrypt_chunks(KEY, SIZE, SEALED[:-1])
    assert next(opened) == DATA[:CHUNK_SIZE]
    assert next(opened) == DATA[CHUNK_SIZE : 2 * CHUNK_SIZE]
    assert next(opened) == DATA[2 * CHUNK_SIZE : 3 * CHUNK_SIZE]
    with pytest.raises(ChunkError):
        next(opened)


def test_encryptor_misuse() -> None:
    encryptor = Encryptor(KEY, CHUNK_SIZE + 1)
    with pytest.raises(ValueError):
        encryptor.seal(1, b"x")  # out of order
    with pytest.raises(ValueError):
        encryptor.seal(0, b"x")  # the first chunk is full
    with pytest.raises(ValueError):
        _ = encryptor.root  # not sealed yet
    encryptor.seal(0, bytes(CHUNK_SIZE))
    with pytest.raises(ValueError):
        encryptor.seal(1, b"xy")
    encryptor.seal(1, b"x")
    assert len(encryptor.root) == HASH_SIZE
    for size in (-1, MAX_SIZE + 1):
        with pytest.raises(ValueError):
            Encryptor(KEY, size)
    with pytest.raises(ValueError):
        Encryptor(bytes(16), 1)


# --- the descriptor -------------------------------------------------------------------------


def descriptor(**changes: object) -> Descriptor:
    base = Descriptor(
        root=bytes(range(32)),
        size=CHUNK_SIZE + 1,
        key=bytes(range(32, 64)),
        mime="image/jpeg",
        name="Réunion du 3 mars.jpg",
        width=640,
        height=480,
        thumbnail=b"\xff\xd8\xff" + bytes(100),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def through_the_wire(value: dict[codec.Key, codec.Value]) -> codec.Value:
    return codec.decode(codec.encode(value))


def test_descriptor_round_trip() -> None:
    for original in (
        descriptor(),
        descriptor(width=None, height=None, thumbnail=None),
        descriptor(size=0, mime=DEFAULT_MIME, name=DEFAULT_NAME, thumbnail=bytes(MAX_THUMBNAIL)),
    ):
        value = original.to_value()
        assert value["chunks"] == chunk_count(original.size)
        assert Descriptor.from_value(through_the_wire(value)) == original
    plain = descriptor(width=None, height=None, thumbnail=None).to_value()
    assert set(plain) == {"root", "size", "chunks", "key", "mime", "name"}


safe_names = st.from_regex(
    r"[A-Za-z0-9éÉçœ]([A-Za-z0-9éÉçœ _()-]{0,40}[A-Za-z0-9éÉçœ)])?(\.[a-z0-9]{1,8})?",
    fullmatch=True,
)
safe_mimes = st.from_regex(r"[a-z0-9][a-z0-9.+-]{0,20}/[a-z0-9][a-z0-9.+-]{0,20}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    root=st.binary(min_size=32, max_size=32),
    size=st.integers(0, MAX_SIZE),
    key=st.binary(min_size=32, max_size=32),
    mime=safe_mimes,
    name=safe_names,
    dimensions=st.none() | st.tuples(st.integers(1, 1 << 16), st.integers(1, 1 << 16)),
    thumbnail=st.none() | st.binary(min_size=1, max_size=64),
)
def test_descriptor_round_trip_property(
    root: bytes,
    size: int,
    key: bytes,
    mime: str,
    name: str,
    dimensions: tuple[int, int] | None,
    thumbnail: bytes | None,
) -> None:
    width, height = dimensions if dimensions is not None else (None, None)
    original = Descriptor(root, size, key, mime, name, width, height, thumbnail)
    assert Descriptor.from_value(through_the_wire(original.to_value())) == original
    reference = clear_reference(original)
    assert set(reference) == {"root", "size"}
    assert parse_clear_reference(through_the_wire(reference)) == (root, size)


def mutated(**changes: codec.Value) -> dict[codec.Key, codec.Value]:
    value = descriptor().to_value()
    for key, item in changes.items():
        if item is None:
            del value[key]
        else:
            value[key] = item
    return value


@pytest.mark.parametrize(
    "value",
    [
        mutated(name="../../etc/passwd"),
        mutated(name="a/b.txt"),
        mutated(name="C:\\x\\y.doc"),
        mutated(name=".bashrc"),
        mutated(name="facture\u202egpj.exe"),
        mutated(name="a\x00b"),
        mutated(name="e\u0301te\u0301.txt"),  # decomposed: not what we send
        mutated(name=" x.txt"),
        mutated(name=""),
        mutated(name="é" * 200),  # 400 bytes
        mutated(name="a" * 256),
        mutated(name=5),
        mutated(mime="Image/JPEG"),
        mutated(mime="text/plain; charset=utf-8"),
        mutated(mime="jpeg"),
        mutated(mime="a/b/c"),
        mutated(mime=""),
        mutated(chunks=1),
        mutated(chunks=3),
        mutated(chunks=None),
        mutated(size=-1),
        mutated(size=MAX_SIZE + 1),
        mutated(size=True),
        mutated(thumb=bytes(MAX_THUMBNAIL + 1)),
        mutated(thumb=b""),
        mutated(thumb="jpeg"),
        mutated(key=bytes(31)),
        mutated(key=bytes(33)),
        mutated(key=None),
        mutated(root=bytes(31)),
        mutated(root=None),
        mutated(h=None),  # a width without a height
        mutated(w=0),
        mutated(w=(1 << 16) + 1),
        mutated(extra=1),
        mutated(url="https://example.org/x"),
        {**descriptor().to_value(), 1: 2},
    ],
)
def test_descriptor_refusals(value: dict[codec.Key, codec.Value]) -> None:
    with pytest.raises(DecodeError):
        Descriptor.from_value(value)


@pytest.mark.parametrize("value", [None, 5, b"x", [], "descriptor"])
def test_descriptor_must_be_a_map(value: codec.Value) -> None:
    with pytest.raises(DecodeError):
        Descriptor.from_value(value)


@pytest.mark.parametrize(
    "value",
    [
        {"root": bytes(32)},
        {"root": bytes(32), "size": 1, "key": bytes(32)},  # no key in the clear
        {"root": bytes(31), "size": 1},
        {"root": bytes(32), "size": MAX_SIZE + 1},
        [bytes(32), 1],
    ],
)
def test_clear_reference_refusals(value: codec.Value) -> None:
    with pytest.raises(DecodeError):
        parse_clear_reference(value)


# --- names and types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("C:\\Users\\Camille\\Documents\\budget.xlsx", "budget.xlsx"),
        ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
        ("dossier/", DEFAULT_NAME),
        ("a\x00b\x1fc\x7fd.txt", "a_b_c_d.txt"),
        ("what?*<>|:.txt", "what______.txt"),
        ('say "hi".txt', "say _hi_.txt"),
        ("facture\u202egpj.exe", "facturegpj.exe"),
        ("\u200bzero\u200dwidth.pdf", "zerowidth.pdf"),
        ("\ufeffbom.txt", "bom.txt"),
        (".bashrc", "bashrc"),
        ("...hidden.txt", "hidden.txt"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("", DEFAULT_NAME),
        ("   ", DEFAULT_NAME),
        (".", DEFAULT_NAME),
        ("..", DEFAULT_NAME),
        ("../..", DEFAULT_NAME),
        ("\u202e", DEFAULT_NAME),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),
        ("Élise — compte rendu.odt", "Élise — compte rendu.odt"),
        ("日本語のファイル.txt", "日本語のファイル.txt"),
    ],
)
def test_safe_name(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


def test_safe_name_keeps_the_extension_within_255_bytes() -> None:
    long = safe_name("a" * 300 + ".pdf")
    assert long == "a" * 251 + ".pdf"
    accented = safe_name("é" * 200 + ".txt")  # 404 bytes
    assert accented == "é" * 125 + ".txt"  # 254 bytes: no half character
    assert len(safe_name("x" * 1000).encode()) == 255
    # An "extension" longer than 32 bytes is not kept as one.
    odd = safe_name("a" * 250 + "." + "b" * 40)
    assert len(odd.encode()) == 255 and odd.startswith("a" * 250 + ".")
    emoji = safe_name("🎉" * 100 + ".png")  # 404 bytes of 4-byte characters
    assert emoji == "🎉" * 62 + ".png"


#: Any text (but lone surrogates: see test_safe_name_survives_undecodable_file_names).
names = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["/", "\\", ".", " ", "\x00", "\u202e", "é", "e\u0301", "\t", "\x85"]),
    ),
    max_size=300,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(names)
@example(". .")
@example(". ..")
@example(" . .")
@example(". . x")
@example("a" * 254 + " b")
@example("M\u202e\u0307")
def test_safe_name_is_a_safe_fixed_point(raw: str) -> None:
    name = safe_name(raw)
    assert name
    assert not {"/", "\\", "\x00"} & set(name)
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in name)
    assert not any(unicodedata.category(c) == "Cf" for c in name)
    assert len(name.encode()) <= 255
    assert name not in (".", "..")
    assert not name.startswith(".")
    assert name == name.strip()
    assert unicodedata.is_normalized("NFC", name)
    # What a receiver checks: a safe name is its own cleaning.
    assert safe_name(name) == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (". .", DEFAULT_NAME),
        (". ..", DEFAULT_NAME),
        (".. ..", DEFAULT_NAME),
        (". \u00a0..", DEFAULT_NAME),
        (". . x", "x"),
        ("M\u202e\u0307.txt", "\u1e40.txt"),  # the mark composes once the override is gone
        ("a" * 254 + " b", "a" * 254),  # cut to 255 bytes, no trailing space left
    ],
)
def test_safe_name_corner_cases(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


def test_a_name_cut_to_size_is_accepted_by_the_receiver() -> None:
    sent = descriptor(name=safe_name("a" * 250 + " rapport final de la réunion.pdf"))
    assert len(sent.name.encode()) <= 255 and sent.name.endswith(".pdf")
    assert Descriptor.from_value(through_the_wire(sent.to_value())) == sent


def test_safe_name_drops_c1_controls() -> None:
    assert not any(unicodedata.category(c) == "Cc" for c in safe_name("a\x9b31mb\x85.txt"))


def test_safe_name_survives_undecodable_file_names() -> None:
    raw = Path(b"/tmp/caf\xe9.txt".decode("utf-8", "surrogateescape")).name
    assert raw == "caf\udce9.txt"
    name = safe_name(raw)
    name.encode()
    assert name.endswith(".txt")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("image/png", "image/png"),
        ("  Text/HTML; charset=UTF-8 ", "text/html"),
        ("application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text"),
        ("application/ld+json", "application/ld+json"),
        ("", DEFAULT_MIME),
        ("text", DEFAULT_MIME),
        ("a/b/c", DEFAULT_MIME),
        ("text/ plain", DEFAULT_MIME),
        ("text/plain\n", "text/plain"),
        ("text/pl ain", DEFAULT_MIME),
        ("/plain", DEFAULT_MIME),
        ("text/" + "a" * 63, "text/" + "a" * 63),
        ("text/" + "a" * 64, DEFAULT_MIME),
        ("tëxt/plain", DEFAULT_MIME),
    ],
)
def test_safe_mime(raw: str, expected: str) -> None:
    assert safe_mime(raw) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_safe_mime_is_idempotent_and_bounded(raw: str) -> None:
    mime = safe_mime(raw)
    assert safe_mime(mime) == mime
    assert len(mime) <= 127 and mime.count("/") == 1


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "video/quicktime"),
        (b"\x00\x00\x00\x20ftypM4A ", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "video/webm"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav"),
        (b"RIFF\x24\x08\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x08\x00\x00AVI LIST", "video/x-msvideo"),
        (b"ID3\x04\x00", "audio/mpeg"),
        (b"fLaC\x00\x00", "audio/flac"),
    ],
)
def test_guess_mime_by_magic_whatever_the_name(head: bytes, expected: str) -> None:
    assert guess_mime("fichier.txt", head) == expected
    assert guess_mime("", head) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.txt", "text/plain"),
        ("rapport.PDF", "application/pdf"),
        ("photo.png", "image/png"),
        ("page.html", "text/html"),
        ("x.unknown-extension", DEFAULT_MIME),
        ("no extension", DEFAULT_MIME),
        ("", DEFAULT_MIME),
    ],
)
def test_guess_mime_by_extension(name: str, expected: str) -> None:
    assert guess_mime(name, b"plain text, no magic") == expected
    assert guess_mime(name, b"") == expected


def test_guess_mime_does_not_match_half_a_magic() -> None:
    assert guess_mime("x.bin", b"\x89PN") == DEFAULT_MIME
    assert guess_mime("x.bin", b"RIFF\x00\x00\x00\x00WAVX") == DEFAULT_MIME
    assert guess_mime("x.bin", b"RIFF") == DEFAULT_MIME
