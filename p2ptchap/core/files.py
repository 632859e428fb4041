"""Files, the pure part: chunked encryption, the Merkle content address, the descriptor.

A file is encrypted once, by its sender, under a fresh random 32-byte
**file key**, in the layout of age's STREAM (C2SP age, "payload"):

* the **payload key** is ``HKDF-SHA-256(ikm=file key, salt="",
  info="p2ptchap/1 file payload")`` (the file key is never reused for
  another file, so age's per-file nonce salt adds nothing here);
* the plaintext is cut into **chunks** of 64 KiB; the last one may be
  shorter, and is empty only when the whole file is (so a file of ``n``
  bytes has ``max(1, ceil(n / 65536))`` chunks);
* chunk ``i`` is sealed with ChaCha20-Poly1305 (IETF) under the payload
  key, no associated data, nonce = ``i`` as 11 big-endian bytes followed by
  ``0x01`` for the last chunk and ``0x00`` for the others.  A chunk moved,
  dropped from the end or taken from another file fails to open; any chunk
  opens alone.

The sealed chunks are the **blob** that peers store and exchange.  Its
**content address** (``root``) commits to them without the key, so a node
that only relays a file checks every chunk it receives:

* leaf ``i`` = ``BLAKE2b-256(0x00 ‖ sealed chunk i)``;
* inner node = ``BLAKE2b-256(0x01 ‖ left ‖ right)``, the tree of RFC 6962
  §2.1 (the left subtree holds the largest power of two of leaves smaller
  than the count);
* ``root`` = ``BLAKE2b-256(0x02 ‖ size as 8 big-endian bytes ‖ tree hash)``,
  binding the plaintext size, hence the chunk count.

Every hash uses BLAKE2b's personalisation ``p2ptchap-file``.  A fetcher
first gets the list of leaves (checked against ``root``), then checks each
chunk against its leaf as it arrives.

The **descriptor** — root, size, chunk count, file key, MIME type, file
name, and for images their dimensions and a small thumbnail — is carried
inside the end-to-end encrypted room message; the message's clear part
names only the root and the size, which is what relays need.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from p2ptchap.core import codec
from p2ptchap.core.errors import N_, DecodeError, RemoteError
from p2ptchap.core.kdf import hkdf_sha256

CHUNK_SIZE: Final = 64 * 1024
TAG_SIZE: Final = 16
SEALED_CHUNK: Final = CHUNK_SIZE + TAG_SIZE
KEY_SIZE: Final = 32
HASH_SIZE: Final = 32
#: The protocol's bound on a file: 2^20 chunks, 64 GiB.  Nodes set their
#: own, lower limit (``[files] max_size``).
MAX_CHUNKS: Final = 1 << 20
MAX_SIZE: Final = MAX_CHUNKS * CHUNK_SIZE
MAX_NAME: Final = 255  # bytes of UTF-8, as most file systems allow
MAX_MIME: Final = 127
MAX_THUMBNAIL: Final = 16 * 1024
MAX_DIMENSION: Final = 1 << 16

PAYLOAD_INFO: Final = b"p2ptchap/1 file payload"
_PERSON: Final = b"p2ptchap-file"
_LEAF, _NODE, _ROOT = b"\x00", b"\x01", b"\x02"

DEFAULT_MIME: Final = "application/octet-stream"
DEFAULT_NAME: Final = "fichier"


class ChunkError(RemoteError):
    """A chunk does not open: tampered, truncated, out of place, or another file's."""

    default_message = N_("The file is damaged: a part of it failed its integrity check.")


def chunk_count(size: int) -> int:
    """How many chunks a file of ``size`` bytes has (at least one)."""
    return max(1, -(-size // CHUNK_SIZE))


def sealed_size(size: int) -> int:
    """The size of the blob of a ``size``-byte file."""
    return size + TAG_SIZE * chunk_count(size)


def chunk_plain_size(size: int, index: int) -> int:
    """The plaintext length of chunk ``index`` of a ``size``-byte file."""
    last = chunk_count(size) - 1
    if not 0 <= index <= last:
        raise ValueError(f"chunk {index} of a {size}-byte file")
    return CHUNK_SIZE if index < last else size - CHUNK_SIZE * last


def payload_key(file_key: bytes) -> bytes:
    if len(file_key) != KEY_SIZE:
        raise ValueError("a file key is 32 bytes")
    return hkdf_sha256(file_key, info=PAYLOAD_INFO)


def chunk_nonce(index: int, last: bool) -> bytes:
    if not 0 <= index < MAX_CHUNKS:
        raise ValueError(f"chunk index {index} out of range")
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal_chunk(key: bytes, index: int, last: bool, plaintext: bytes) -> bytes:
    """Seal one chunk with the *payload* key (see :func:`payload_key`)."""
    if len(plaintext) > CHUNK_SIZE or (not last and len(plaintext) != CHUNK_SIZE):
        raise ValueError("only the last chunk may be shorter than 64 KiB")
    if last and not plaintext and index:
        raise ValueError("only the chunk of an empty file may be empty")
    return crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, None, chunk_nonce(index, last), key)


def open_chunk(key: bytes, index: int, last: bool, sealed: bytes) -> bytes:
    """Open one chunk; raise :class:`ChunkError` if it is not chunk ``index`` of this file."""
    if not TAG_SIZE <= len(sealed) <= SEALED_CHUNK or (not last and len(sealed) != SEALED_CHUNK):
        raise ChunkError(f"chunk {index}: {len(sealed)} bytes")
    try:
        plaintext = crypto_aead_chacha20poly1305_ietf_decrypt(
            bytes(sealed), None, chunk_nonce(index, last), key
        )
    except CryptoError as exc:
        raise ChunkError(f"chunk {index} does not open") from exc
    if last and not plaintext and index:
        raise ChunkError("an empty last chunk after others")
    return plaintext


# --- content address ---------------------------------------------------------------------


def _hash(*parts: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=HASH_SIZE, person=_PERSON)
    for part in parts:
        digest.update(part)
    return digest.digest()


def leaf_hash(sealed: bytes) -> bytes:
    return _hash(_LEAF, sealed)


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash over leaf hashes (at least one), iteratively.

    Equal to the recursive definition (tested against it): at each level,
    pairs are combined left to right and an odd last node is carried up,
    which is how the largest-power-of-two split unfolds bottom-up.
    """
    if not leaves:
        raise ValueError("a tree has at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        paired = [_hash(_NODE, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def content_root(size: int, leaves: Sequence[bytes]) -> bytes:
    """The content address of a ``size``-byte file whose sealed chunks have ``leaves``."""
    if len(leaves) != chunk_count(size):
        raise ValueError("one leaf per chunk")
    return _hash(_ROOT, size.to_bytes(8, "big"), tree_hash(leaves))


def check_leaves(root: bytes, size: int, leaves: bytes) -> list[bytes]:
    """Split concatenated leaf hashes and check them against ``root``; raise :class:`ChunkError`."""
    count = chunk_count(size)
    if len(leaves) != HASH_SIZE * count:
        raise ChunkError(f"{len(leaves)} bytes of leaves for {count} chunks")
    split = [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)]
    if content_root(size, split) != root:
        raise ChunkError("the leaves do not lead to the file's address")
    return split


# --- encrypting a whole file ---------------------------------------------------------------


class Encryptor:
    """Seals a file chunk by chunk, computing its leaves (and so its root) on the way."""

    def __init__(self, file_key: bytes, size: int) -> None:
        if not 0 <= size <= MAX_SIZE:
            raise ValueError("file too large for the format")
        self.size = size
        self.count = chunk_count(size)
        self._key = payload_key(file_key)
        self.leaves: list[bytes] = []

    def seal(self, index: int, plaintext: bytes) -> bytes:
        """Seal chunk ``index`` (chunks must come in order); return the sealed bytes."""
        if index != len(self.leaves):
            raise ValueError("chunks are sealed in order")
        if len(plaintext) != chunk_plain_size(self.size, index):
            raise ValueError(f"chunk {index} should be {chunk_plain_size(self.size, index)} bytes")
        sealed = seal_chunk(self._key, index, index == self.count - 1, plaintext)
        self.leaves.append(leaf_hash(sealed))
        return sealed

    @property
    def root(self) -> bytes:
        if len(self.leaves) != self.count:
            raise ValueError("the file is not sealed yet")
        return content_root(self.size, self.leaves)


def encrypt_bytes(file_key: bytes, data: bytes) -> tuple[bytes, list[bytes], list[bytes]]:
    """Seal ``data`` whole (small files, tests): (root, sealed chunks, leaves)."""
    encryptor = Encryptor(file_key, len(data))
    sealed = [
        encryptor.seal(i, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
        for i in range(encryptor.count)
    ]
    return encryptor.root, sealed, encryptor.leaves


def decrypt_chunks(file_key: bytes, size: int, sealed: Iterable[bytes]) -> Iterator[bytes]:
    """Open the chunks of a ``size``-byte file, in order; raise :class:`ChunkError`.

    Truncation (too few chunks) and extension (too many) are errors too.
    """
    key = payload_key(file_key)
    count = chunk_count(size)
    index = -1
    for index, chunk in enumerate(sealed):
        if index >= count:
            raise ChunkError("more chunks than the file has")
        plaintext = open_chunk(key, index, index == count - 1, chunk)
        if len(plaintext) != chunk_plain_size(size, index):
            raise ChunkError(f"chunk {index} has the wrong length")
        yield plaintext
    if index != count - 1:
        raise ChunkError(f"the file stops after {index + 1} of {count} chunks")


# --- names and types -----------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\:*?\"<>|]")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")


def safe_name(name: str) -> str:
    """A file name safe to create in a folder: no path, no control character, no hidden dot.

    ``../../etc/passwd`` becomes ``passwd``; ``C:\\x\\y.doc`` becomes ``y.doc``;
    a name that is nothing once cleaned becomes ``fichier``.  Accents are kept
    (in NFC); the result is at most 255 bytes of UTF-8, keeping the extension.
    Cleaning is repeated until nothing changes, so a safe name is its own
    cleaning (what a receiver checks).
    """
    for _ in range(8):
        cleaned = _clean_name(name)
        if cleaned == name:
            break
        name = cleaned
    return name


def _clean_name(name: str) -> str:
    # A local name that is not UTF-8 comes with surrogate escapes: make
    # them replacement characters (they cannot be encoded, nor sent).
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = unicodedata.normalize("NFC", name)
    # The last path component, whichever separator the sender's system used.
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name)
    # Bidirectional overrides and other format characters can disguise an
    # extension ("exe.pdf" shown as "fdp.exe"): drop them.
    name = "".join(c for c in name if unicodedata.category(c) != "Cf")
    name = unicodedata.normalize("NFC", name).strip().lstrip(".").strip()
    if not name:
        return DEFAULT_NAME
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode()) > 32:
        stem, dot, extension = name, "", ""
    budget = MAX_NAME - len(dot.encode()) - len(extension.encode())
    stem_bytes = stem.encode()
    if len(stem_bytes) > budget:
        stem = stem_bytes[:budget].decode(errors="ignore").rstrip()
    return (stem + dot + extension) or DEFAULT_NAME


def safe_mime(mime: str) -> str:
    """``mime`` lower-cased if it is a plain ``type/subtype``; else ``application/octet-stream``."""
    mime = mime.strip().lower().split(";", 1)[0].strip()
    return mime if _MIME.match(mime) else DEFAULT_MIME


_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"OggS", 0, "audio/ogg"),
    (b"ID3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),
)


def guess_mime(name: str, head: bytes) -> str:
    """The MIME type from the file's first bytes, else from its name's extension."""
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return safe_mime(guessed) if guessed else DEFAULT_MIME


# --- descriptor ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Descriptor:
    """What a member needs to fetch, check and open a file (sent encrypted)."""

    root: bytes
    size: int
    key: bytes
    mime: str
    name: str
    width: int | None = None
    height: int | None = None
    #: A small JPEG preview of an image (at most 16 KiB), made by the sender.
    thumbnail: bytes | None = None

    @property
    def chunks(self) -> int:
        return chunk_count(self.size)

    def to_value(self) -> dict[codec.Key, codec.Value]:
        value: dict[codec.Key, codec.Value] = {
            "root": self.root,
            "size": self.size,
            "chunks": self.chunks,
            "key": self.key,
            "mime": self.mime,
            "name": self.name,
        }
        if self.width is not None and self.height is not None:
            value["w"], value["h"] = self.width, self.height
        if self.thumbnail is not None:
            value["thumb"] = self.thumbnail
        return value

    @classmethod
    def from_value(cls, value: codec.Value) -> Descriptor:
        """Check and read a descriptor; raise :class:`DecodeError`.

        The name and type are taken as the sender wrote them only if they
        are already safe; otherwise they are refused (a sender of ours
        never writes an unsafe one).
        """
        what = "file descriptor"
        mapping = codec.expect_map(value, what)
        codec.only_keys(
            mapping, ("root", "size", "chunks", "key", "mime", "name", "w", "h", "thumb"), what
        )
        size = codec.get_int(mapping, "size", what, maximum=MAX_SIZE)
        if codec.get_int(mapping, "chunks", what, maximum=MAX_CHUNKS) != chunk_count(size):
            raise DecodeError(f"{what}: chunk count does not match the size")
        mime = codec.get_text(mapping, "mime", what, MAX_MIME)
        name = codec.get_text(mapping, "name", what, MAX_NAME)
        if safe_mime(mime) != mime:
            raise DecodeError(f"{what}: bad MIME type")
        if safe_name(name) != name:
            raise DecodeError(f"{what}: unsafe file name")
        width = height = None
        if "w" in mapping or "h" in mapping:
            width = codec.get_int(mapping, "w", what, 1, MAX_DIMENSION)
            height = codec.get_int(mapping, "h", what, 1, MAX_DIMENSION)
        thumbnail = None
        if "thumb" in mapping:
            thumbnail = codec.get_bytes(mapping, "thumb", what)
            if not 0 < len(thumbnail) <= MAX_THUMBNAIL:
                raise DecodeError(f"{what}: thumbnail too large")
        return cls(
            root=codec.get_bytes(mapping, "root", what, HASH_SIZE),
            size=size,
            key=codec.get_bytes(mapping, "key", what, KEY_SIZE),
            mime=mime,
            name=name,
            width=width,
            height=height,
            thumbnail=thumbnail,
        )


def clear_reference(descriptor: Descriptor) -> dict[codec.Key, codec.Value]:
    """The clear part of a file message: what relays need (root and size), no key, no name."""
    return {"root": descriptor.root, "size": descriptor.size}


def parse_clear_reference(value: codec.Value) -> tuple[bytes, int]:
    """``(root, size)`` from a message's clear ``file`` field; raise :class:`DecodeError`."""
    what = "file reference"
    mapping = codec.expect_map(value, what)
    codec.only_keys(mapping, ("root", "size"), what)
    return (
        codec.get_bytes(mapping, "root", what, HASH_SIZE),
        codec.get_int(mapping, "size", what, maximum=MAX_SIZE),
    )
