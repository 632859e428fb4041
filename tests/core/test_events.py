"""Room events on their own: ids, signatures, content schemas, structural limits."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import codec
from p2ptchap.core.errors import DecodeError
from p2ptchap.core.events import (
    EVENT_CONTEXT,
    MAX_EVENT_BYTES,
    MAX_PREV,
    EventType,
    InvalidEvent,
    make_event,
    parse_event,
    reload_event,
)
from p2ptchap.core.keys import AccountSecret, DeviceSecret, Rng
from tests.conftest import NOW, assert_every_flip_rejected
from tests.room_cell import scenario

T = EventType


@pytest.fixture
def author(rng: Rng) -> tuple[DeviceSecret, AccountSecret]:
    return DeviceSecret.generate(rng), AccountSecret.generate(rng)


def create(author: tuple[DeviceSecret, AccountSecret]):  # type: ignore[no-untyped-def]
    device, account = author
    return make_event(
        device,
        account.public_key(),
        T.CREATE,
        {"direct": False},
        room=None,
        seq=1,
        prev_seq=None,
        prev=[],
        depth=0,
        ts=NOW * 1000,
        state_key="",
    )


def follow(author, parent, kind, content, state_key=None, seq=2):  # type: ignore[no-untyped-def]
    device, account = author
    return make_event(
        device,
        account.public_key(),
        kind,
        content,
        room=parent.room,
        seq=seq,
        prev_seq=parent.id,
        prev=[parent.id],
        depth=parent.depth + 1,
        ts=NOW * 1000,
        state_key=state_key,
    )


def test_ids_room_ids_and_round_trip(author) -> None:  # type: ignore[no-untyped-def]
    root = create(author)
    assert root.id == hashlib.blake2b(root.raw, digest_size=32).digest()
    assert root.room == root.id  # a room is named by its create event
    name = follow(author, root, T.NAME, {"name": "Cellule de crise — Somme"}, state_key="")
    assert name.room == root.id and name.depth == 1 and name.prev == (root.id,)
    assert parse_event(name.raw) == name


MEMBER_KEY = "ab" * 32
VALID = [
    (T.NAME, {"name": "Salon"}, ""),
    (T.TOPIC, {"topic": "Inondations"}, ""),
    (T.JOIN_RULE, {"rule": "public"}, ""),
    (T.EXTERNALS, {"allow": True}, ""),
    (T.HISTORY, {"visibility": "shared"}, ""),
    (
        T.POWER,
        {
            "users": {b"\x01" * 32: 100},
            "invite": 0,
            "kick": 50,
            "ban": 50,
            "redact": 50,
            "state": 50,
            "post": 0,
        },
        "",
    ),
    (T.MEMBER, {"membership": "join", "certificate": b"cert"}, MEMBER_KEY),
    (T.MEMBER, {"membership": "ban", "reason": "spam"}, MEMBER_KEY),
    (T.EMAIL_INVITE, {"invited": True}, "jean@x.gouv.fr"),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 0, "ct": b"\x04" * 16}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 2**32 - 1, "ct": b"\x04" * 300}, None),
    (T.EDIT, {"target": b"\x02" * 32, "session": b"\x03" * 32, "index": 7, "ct": b"n" * 20}, None),
    (
        T.REACTION,
        {"target": b"\x02" * 32, "session": b"\x03" * 32, "index": 1, "ct": b"r" * 17},
        None,
    ),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b"", b"box"]}}, None),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b"p" * 8, b"box"]}}, None),
    (T.HISTORY_KEYS, {"shares": {b"\x05" * 32: [b"p" * 8, b"box"]}}, None),
    (T.REDACTION, {"target": b"\x02" * 32, "reason": "erreur"}, None),
]


@pytest.mark.parametrize(("kind", "content", "state_key"), VALID)
def test_every_type_round_trips(author, kind, content, state_key) -> None:  # type: ignore[no-untyped-def]
    event = follow(author, create(author), kind, content, state_key=state_key)
    assert parse_event(event.raw).content == content
    assert event.is_state == (state_key is not None)


INVALID = [
    (T.NAME, {"name": "x" * 256}, ""),
    (T.NAME, {"name": "ok", "extra": 1}, ""),
    (T.NAME, {"name": "ok"}, None),  # a state event without a state key
    (T.JOIN_RULE, {"rule": "open"}, ""),
    (T.EXTERNALS, {"allow": "yes"}, ""),
    (T.HISTORY, {"visibility": "world"}, ""),
    (
        T.POWER,
        {"users": {}, "invite": 101, "kick": 50, "ban": 50, "redact": 50, "state": 50, "post": 0},
        "",
    ),
    (
        T.POWER,
        {
            "users": {b"short": 50},
            "invite": 0,
            "kick": 50,
            "ban": 50,
            "redact": 50,
            "state": 50,
            "post": 0,
        },
        "",
    ),
    (T.MEMBER, {"membership": "owner"}, MEMBER_KEY),
    (T.MEMBER, {"membership": "join"}, "not-hex"),
    (T.MEMBER, {"membership": "join"}, MEMBER_KEY.upper()),
    (T.EMAIL_INVITE, {"invited": True}, "Jean@X.gouv.fr"),
    (T.MESSAGE, {"body": b"in clear"}, None),  # messages are always encrypted
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 0, "ct": b"x" * 15}, None),  # under a tag
    (T.MESSAGE, {"session": b"\x03" * 31, "index": 0, "ct": b"x" * 16}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 2**32, "ct": b"x" * 16}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": -1, "ct": b"x" * 16}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 0, "ct": "text"}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 0, "ct": b"x" * 16, "body": b"x"}, None),
    (T.MESSAGE, {"session": b"\x03" * 32, "index": 0, "ct": b"x" * 16}, ""),  # not state
    (
        T.REACTION,
        {"target": b"\x02" * 31, "session": b"\x03" * 32, "index": 0, "ct": b"x" * 16},
        None,
    ),
    (T.REACTION, {"target": b"\x02" * 32, "key": "+1"}, None),
    (T.EDIT, {"session": b"\x03" * 32, "index": 0, "ct": b"x" * 16}, None),  # no target
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {}}, None),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 31: [b"", b"box"]}}, None),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b"p" * 7, b"box"]}}, None),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b"", "box"]}}, None),
    (T.ROOM_KEY, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b""]}}, None),
    (T.ROOM_KEY, {"shares": {b"\x05" * 32: [b"", b"box"]}}, None),
    (T.HISTORY_KEYS, {"session": b"\x03" * 32, "shares": {b"\x05" * 32: [b"", b"b"]}}, None),
]


@pytest.mark.parametrize(("kind", "content", "state_key"), INVALID)
def test_content_schemas_are_enforced(author, kind, content, state_key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvent) as info:
        follow(author, create(author), kind, content, state_key=state_key)
    assert info.value.reason == "malformed"


def _resign(author, body: dict) -> bytes:  # type: ignore[no-untyped-def]
    device, _ = author
    encoded = codec.encode(body)
    return codec.encode({"body": encoded, "sig": device.sign(EVENT_CONTEXT + encoded)})


def _body(event) -> dict:  # type: ignore[no-untyped-def]
    outer = codec.decode(event.raw)
    return dict(codec.decode(outer["body"]))  # type: ignore[index, call-overload]


def test_structural_rules(author) -> None:  # type: ignore[no-untyped-def]
    root = create(author)
    child = follow(author, root, T.NAME, {"name": "x"}, state_key="")
    cases = {
        "create with a room": {**_body(root), "room": b"\x00" * 32},
        "create with depth": {**_body(root), "depth": 1},
        "child without parents": {k: v for k, v in _body(child).items() if k != "prev"},
        "unsorted parents": {**_body(child), "prev": [b"\x02" * 32, b"\x01" * 32]},
        "repeated parent": {**_body(child), "prev": [b"\x01" * 32, b"\x01" * 32]},
        "first event with prev_seq": {**_body(child), "seq": 1},
        "later event without prev_seq": {k: v for k, v in _body(child).items() if k != "prev_seq"},
        "unknown field": {**_body(child), "colour": "red"},
        "unknown type": {**_body(child), "type": "poll"},
        "version 2": {**_body(child), "v": 2},
    }
    for why, body in cases.items():
        with pytest.raises(InvalidEvent) as info:
            parse_event(_resign(author, body))
        assert info.value.reason == "malformed", why
    many = {**_body(child), "prev": sorted(bytes([i]) * 32 for i in range(MAX_PREV + 1))}
    with pytest.raises(InvalidEvent) as info:
        parse_event(_resign(author, many))
    assert info.value.reason == "too-many-parents"


def test_signatures(author, rng: Rng) -> None:  # type: ignore[no-untyped-def]
    root = create(author)
    # Claiming another device's key: the signature does not match it.
    other = DeviceSecret.generate(rng)
    body = {**_body(root), "device": bytes(other.public_key())}
    with pytest.raises(InvalidEvent) as info:
        parse_event(_resign(author, body))
    assert info.value.reason == "bad-signature"
    assert_every_flip_rejected(root.raw, parse_event, (InvalidEvent,))


def test_oversized_events(author) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvent) as info:
        parse_event(b"\x00" * (MAX_EVENT_BYTES + 1))
    assert info.value.reason == "oversized"
    with pytest.raises(InvalidEvent):
        content = {"session": bytes(32), "index": 0, "ct": b"x" * MAX_EVENT_BYTES}
        follow(author, create(author), T.MESSAGE, content)


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_invalid_event(data: bytes) -> None:
    try:
        parse_event(data)
    except InvalidEvent:
        return


def test_reloading_a_stored_event_gives_the_checked_event() -> None:
    _, events = scenario(4)
    for event in events:
        assert reload_event(event.raw) == parse_event(event.raw) == event


def test_trusted_decoding_still_refuses_tags() -> None:
    with pytest.raises(DecodeError):
        codec.decode_trusted(b"\xc1\x01")  # tag 1 (a date for cbor2)
    with pytest.raises(DecodeError):
        codec.decode_trusted(b"\xff")
