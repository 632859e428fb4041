"""A small world of people writing room events from their own point of view (tests only)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from p2ptchap.core.events import Event, EventType, make_event
from p2ptchap.core.identity import Kind
from p2ptchap.core.keys import AccountKey, AccountSecret, DeviceKey, DeviceSecret
from p2ptchap.core.room import Person, Resolution, resolve
from tests.conftest import make_rng

T = EventType
_ENCRYPTED = frozenset({T.MESSAGE, T.EDIT, T.REACTION})


def encrypted_shape(kind: EventType, content: dict) -> dict:  # type: ignore[type-arg]
    """``content`` in the encrypted shape the rules see, from a readable clear one.

    Room-rule tests write ``{"body": b"bonjour"}`` for legibility; on the wire
    a message's content is ``{"session", "index", "ct"}`` (``core/megolm.py``).
    The "ciphertext" here is the clear text padded past the tag size: the
    rules never look inside it.
    """
    if kind not in _ENCRYPTED or "ct" in content:
        return content
    clear = content.get("body", content.get("key", b""))
    data = clear.encode() if isinstance(clear, str) else bytes(clear)
    shaped = {"session": bytes(32), "index": 0, "ct": data + bytes(16)}
    if "target" in content:
        shaped["target"] = content["target"]
    return shaped


@dataclasses.dataclass
class Author:
    name: str
    account: AccountSecret
    device: DeviceSecret
    person: Person
    seq: int = 0
    last: bytes | None = None

    @property
    def key(self) -> AccountKey:
        return self.account.public_key()

    @property
    def hex(self) -> str:
        return bytes(self.key).hex()


class Cell:
    """People, and a way to write events from any author's point of view."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = make_rng(seed)
        self.authors: dict[str, Author] = {}
        self.room: bytes = b""
        self._known: dict[tuple[bytes, bytes], Person] = {}

    def person(self, name: str, kind: Kind = Kind.AGENT) -> Author:
        author = Author(
            name,
            AccountSecret.generate(self.rng),
            DeviceSecret.generate(self.rng),
            Person(kind, f"{name}@x.gouv.fr"),
        )
        self.authors[name] = author
        return author

    def directory(self, account: AccountKey, device: DeviceKey) -> Person | None:
        # A table built once per set of people: deriving public keys on every
        # call would make the benchmarks measure key derivation, not rooms.
        if len(self._known) != len(self.authors):
            self._known = {
                (bytes(a.key), bytes(a.device.public_key())): a.person
                for a in self.authors.values()
            }
        return self._known.get((bytes(account), bytes(device)))

    def people(self, account: AccountKey) -> Person | None:
        return next((a.person for a in self.authors.values() if a.key == account), None)

    def create(self, author: Author, direct: bool = False) -> Event:
        event = make_event(
            author.device,
            author.key,
            T.CREATE,
            {"direct": direct},
            room=None,
            seq=1,
            prev_seq=None,
            prev=[],
            depth=0,
            ts=0,
            state_key="",
        )
        author.seq, author.last, self.room = 1, event.id, event.id
        return event

    def emit(
        self,
        author: Author,
        view: list[Event],
        kind: EventType,
        content: dict,  # type: ignore[type-arg]
        state_key: str | None = None,
    ) -> Event:
        referenced = {p for e in view for p in e.prev}
        heads = sorted((e for e in view if e.id not in referenced), key=lambda e: (e.depth, e.id))
        heads = heads[-16:]
        previous = [e.depth for e in view if e.id == author.last]
        author.seq += 1
        event = make_event(
            author.device,
            author.key,
            kind,
            encrypted_shape(kind, content),
            room=self.room,
            seq=author.seq,
            prev_seq=author.last,
            prev=[e.id for e in heads],
            depth=1 + max([e.depth for e in heads] + previous),
            ts=0,
            state_key=state_key,
        )
        author.last = event.id
        view.append(event)
        return event

    def public_room(self, creator: Author, *joining: Author) -> list[Event]:
        """A public room made by ``creator`` that ``joining`` have joined: the view."""
        view = [self.create(creator)]
        self.emit(creator, view, T.JOIN_RULE, {"rule": "public"}, "")
        for author in joining:
            self.member(author, view, author, "join")
        return view

    def forge(
        self,
        author: Author,
        kind: EventType,
        content: dict,  # type: ignore[type-arg]
        *,
        seq: int,
        prev_seq: bytes | None,
        prev: list[bytes],
        depth: int,
        state_key: str | None = None,
    ) -> Event:
        """An event of this room with links chosen by the test (lies included)."""
        return make_event(
            author.device,
            author.key,
            kind,
            encrypted_shape(kind, content),
            room=self.room,
            seq=seq,
            prev_seq=prev_seq,
            prev=prev,
            depth=depth,
            ts=0,
            state_key=state_key,
        )

    def fork_first(self, author: Author, event: Event, content: dict) -> Event:  # type: ignore[type-arg]
        """Another event of ``author``'s device with ``event``'s ``seq`` and links, that
        sorts before it (a thief holding the key grinds ``ts`` until it does)."""
        ts = 0
        while True:
            fork = make_event(
                author.device,
                author.key,
                event.type,
                encrypted_shape(event.type, content),
                room=self.room,
                seq=event.seq,
                prev_seq=event.prev_seq,
                prev=list(event.prev),
                depth=event.depth,
                ts=ts,
                state_key=event.state_key,
            )
            if fork.id < event.id:
                return fork
            ts += 1

    def member(self, author: Author, view: list[Event], target: Author, membership: str) -> Event:
        return self.emit(author, view, T.MEMBER, {"membership": membership}, target.hex)

    def resolve(self, events: list[Event]) -> Resolution:
        return resolve(events, self.room, self.directory, self.people)


#: A random move: ``(author, author's replica, someone else)``.
Move = Callable[[Author, list[Event], Author], object]


def diverge(
    people: list[Author],
    common: list[Event],
    chooser: random.Random,
    steps: int,
    moves: Sequence[tuple[float, Move]],
) -> list[Event]:
    """``steps`` random moves by ``people``, each on their own replica of ``common``.

    ``moves`` pairs an upper bound of a uniform roll with a move; a roll above
    every bound makes the author's replica and another's exchange what they
    have.  Every event made, on any replica, is returned once.
    """
    views = {p.name: list(common) for p in people}
    for _ in range(steps):
        author, other = chooser.choice(people), chooser.choice(people)
        view = views[author.name]
        roll = chooser.random()
        move = next((m for bound, m in moves if roll < bound), None)
        if move is not None:
            move(author, view, other)
        else:  # two replicas exchange what they have
            merged = {e.id: e for e in view + views[other.name]}
            views[author.name] = views[other.name] = list(merged.values())
    return list({e.id: e for v in views.values() for e in v}.values())


def scenario(seed: int) -> tuple[Cell, list[Event]]:
    """Random operations by four people on diverging replicas (removals included)."""
    cell = Cell(seed)
    chooser = random.Random(seed)
    people = [cell.person(n) for n in ("alice", "bruno", "carole")]
    people.append(cell.person("eve", Kind.EXTERNAL))
    common = [cell.create(people[0])]
    cell.emit(people[0], common, T.JOIN_RULE, {"rule": "public"}, "")
    cell.emit(people[0], common, T.EXTERNALS, {"allow": True}, "")
    for p in people[1:]:
        cell.member(people[0], common, p, "invite")
    moves: list[tuple[float, Move]] = [
        (0.35, lambda a, view, _o: cell.emit(a, view, T.MESSAGE, {"body": b"m"})),
        (0.5, lambda a, view, _o: cell.member(a, view, a, "join")),
        (
            0.6,
            lambda a, view, o: cell.member(a, view, o, chooser.choice(["leave", "ban", "invite"])),
        ),
        (
            0.65,
            lambda a, view, _o: cell.emit(
                a, view, T.EXTERNALS, {"allow": chooser.random() < 0.5}, ""
            ),
        ),
        (
            0.72,
            lambda a, view, _o: cell.emit(a, view, T.NAME, {"name": chooser.choice("xyz")}, ""),
        ),
    ]
    return cell, diverge(people, common, chooser, 30, moves)
