"""The people directory: every valid account certificate seen, searchable by name or e-mail.

Searching is case- and accent-insensitive ("helene dupont" finds
"Hélène Dupont"): names and queries are folded (NFKD, combining marks
removed, case-folded) and split into words; an entry matches when every word
of the query is the beginning of one of its words (first name, last name,
parts of the e-mail address).  Results are sorted by display name.

The directory holds verified certificates only; who may search it (agents
only: Tchap's rule keeps externals from browsing the agents' directory) is
decided by the caller, see :func:`may_search`.

Public rooms are listed from signed summaries (:func:`make_summary`): a
member's device describes the room's name, topic and member count; the
newest summary of a room wins, and a summary saying the room is no longer
public withdraws it.  Private rooms never have one.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable
from typing import Final

from p2ptchap.core import codec
from p2ptchap.core.envelope import open_envelope, seal
from p2ptchap.core.errors import N_, DecodeError, RemoteError
from p2ptchap.core.events import ID_SIZE, MAX_NAME, MAX_TOPIC
from p2ptchap.core.identity import AccountCertificate, Kind
from p2ptchap.core.keys import KEY_SIZE, AccountKey, DeviceKey, DeviceSecret
from p2ptchap.core.room import RoomState

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case, without accents: ``"Hélène-Éloïse"`` → ``"helene-eloise"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The folded words of ``text`` (letters and digits; ``.``, ``-``, ``@`` separate)."""
    return _WORD.findall(fold(text))


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One person in the directory."""

    account: AccountKey
    email: str
    name: str
    kind: Kind
    words: tuple[str, ...]

    @property
    def is_external(self) -> bool:
        return self.kind is Kind.EXTERNAL


def may_search(kind: Kind) -> bool:
    """Whether an account of this kind may browse the people directory."""
    return kind is Kind.AGENT


class PeopleDirectory:
    """Accounts by key, with an index of folded words."""

    def __init__(self, certificates: Iterable[AccountCertificate] = ()) -> None:
        self._entries: dict[AccountKey, Entry] = {}
        for certificate in certificates:
            self.add(certificate)

    def add(self, certificate: AccountCertificate) -> None:
        """Add or replace (a newer certificate of the same account) an entry."""
        local = certificate.email.rpartition("@")[0]
        entry = Entry(
            certificate.account_key,
            certificate.email,
            certificate.display_name,
            certificate.kind,
            tuple(dict.fromkeys([*words(certificate.display_name), *words(local)])),
        )
        self._entries[certificate.account_key] = entry

    def get(self, account: AccountKey) -> Entry | None:
        return self._entries.get(account)

    def search(self, query: str, limit: int = 50) -> list[Entry]:
        """Entries matching every word of ``query`` (see the module documentation)."""
        wanted = words(query)
        if not wanted:
            return []
        folded_query = fold(query.strip())
        found = [
            entry
            for entry in self._entries.values()
            if entry.email == folded_query
            or all(any(w.startswith(q) for w in entry.words) for q in wanted)
        ]
        return sorted(found, key=lambda e: (fold(e.name), e.email))[:limit]

    def __len__(self) -> int:
        return len(self._entries)


# --- public rooms ------------------------------------------------------------------------

SUMMARY_CONTEXT: Final = b"p2ptchap/1 room summary\x00"
MAX_SUMMARY_BYTES: Final = 8 * 1024
_SUMMARY_LIMITS: Final = codec.Limits(max_bytes=MAX_SUMMARY_BYTES, max_items=64, max_depth=2)


@dataclasses.dataclass(frozen=True, slots=True)
class RoomSummary:
    """A public room as a member's device described it, signed.

    ``public`` false is a retraction: the room went private, and summaries
    older than this one must not bring it back into the directory.
    """

    room: bytes
    public: bool
    name: str
    topic: str
    members: int
    ts: int
    account: AccountKey
    device: DeviceKey
    raw: bytes

    def matches(self, query: str) -> bool:
        """Every word of ``query`` starts a word of the name or the topic."""
        mine = [*words(self.name), *words(self.topic)]
        return all(any(w.startswith(q) for w in mine) for q in words(query))


def make_summary(secret: DeviceSecret, account: AccountKey, state: RoomState, ts: int) -> bytes:
    """Sign the summary of a room's current state (a withdrawal if it is private).

    A withdrawal says nothing of the room but its id: no name, topic or
    member count of a room that is private.
    """
    public = state.join_rule == "public" and not state.direct
    body = codec.encode(
        {
            "v": 1,
            "room": state.room,
            "public": public,
            "name": state.name if public else "",
            "topic": state.topic if public else "",
            "members": len(state.members()) if public else 0,
            "ts": ts,
            "account": bytes(account),
            "device": bytes(secret.public_key()),
        }
    )
    return seal(secret, SUMMARY_CONTEXT, body)


def parse_summary(raw: bytes) -> RoomSummary:
    """Check a summary's shape and signature; raise :class:`InvalidSummary`.

    Whether the signing device belongs to a valid agent is the caller's
    question (it holds the directory).
    """
    try:
        body_bytes, body, signature = open_envelope(
            raw,
            lambda data: codec.decode(data, _SUMMARY_LIMITS),
            "summary",
            ("v", "room", "public", "name", "topic", "members", "ts", "account", "device"),
        )
        public = codec.field(body, "public", "summary")
        if not isinstance(public, bool):
            raise DecodeError("summary: public is a boolean")
        summary = RoomSummary(
            room=codec.get_bytes(body, "room", "summary", size=ID_SIZE),
            public=public,
            name=codec.get_text(body, "name", "summary", MAX_NAME),
            topic=codec.get_text(body, "topic", "summary", MAX_TOPIC),
            members=codec.get_int(body, "members", "summary", minimum=0),
            ts=codec.get_int(body, "ts", "summary", minimum=0),
            account=AccountKey(codec.get_bytes(body, "account", "summary", size=KEY_SIZE)),
            device=DeviceKey(codec.get_bytes(body, "device", "summary", size=KEY_SIZE)),
            raw=raw,
        )
    except DecodeError as exc:
        raise InvalidSummary(str(exc)) from exc
    try:
        summary.device.verify(SUMMARY_CONTEXT + body_bytes, signature)
    except RemoteError as exc:
        raise InvalidSummary(f"bad signature: {exc}") from exc
    return summary


class InvalidSummary(RemoteError):
    """A public-room summary that is malformed or wrongly signed."""

    default_message = N_("A public room description was malformed or forged and was ignored.")
