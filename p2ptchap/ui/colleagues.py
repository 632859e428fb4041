"""Simulated colleagues for ``p2ptchap chat --demo``: Bruno, Claire and Éric answer.

``p2ptchap chat --demo`` builds the demo's crisis cell (:mod:`p2ptchap.ui.demo`)
in a temporary folder, runs a node for each person, and opens the terminal
app as Alice.  This module plays the three others, in a child process
(``python -m p2ptchap.ui.colleagues FOLDER``) so that the app stays
responsive: it holds their keys, and acts through the same library the
commands use, on each person's own database, next to their running node —
which carries what they write to Alice's node like any other event.

What they do, so that a newcomer has something to try at once:

* Bruno, the cell's coordinator, opens the private room "Cellule de crise"
  (externals allowed: Éric of the Red Cross is in it, marked external),
  invites Claire and Éric, then Alice once the others have said hello —
  the room's history is shared, so Alice reads what was said before her.
  He also opens the public forum "Points de situation" and posts there from
  time to time.
* Claire writes to Alice in a direct conversation, with a hint of what to
  type.
* Every colleague joins the rooms Alice invites them to, and says so.
* They answer what Alice writes: in a direct conversation the other person;
  in a room whoever she names (``@Bruno``, or just the first name), else
  one of the members in turn.  A question gets an answer in reply to it, a
  file an acknowledgement with its name, a greeting a greeting; now and
  then someone adds a 👍.

They only ever answer Alice, so two colleagues never talk in a loop, and
they answer after a short human-like pause.  Their lines go through the
catalogs: French by default, English when the app is in English.

Nothing here is faked below the rooms API: the events are signed with each
person's device key, encrypted to the room and replicated by the nodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
import logging
import random
import signal
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Final

from p2ptchap.core.errors import N_, P2PTchapError
from p2ptchap.core.events import Membership
from p2ptchap.core.keys import AccountKey
from p2ptchap.i18n import Translator
from p2ptchap.rooms import Message, Rooms, open_rooms
from p2ptchap.store.home import Home
from p2ptchap.ui.demo import ALICE, BRUNO, CLAIRE, DEMO_PASSPHRASE, ERIC, FORUM, ROOM, Person

log = logging.getLogger("p2ptchap.colleagues")

#: Seconds between two looks at the databases.
TICK: Final = 0.5
#: A colleague's pause before answering, in seconds (as if typing).
PAUSE: Final = (1.0, 3.0)
#: Seconds between two posts in the forum, and between two updates in the room.
FORUM_EVERY: Final = 150.0
ROOM_EVERY: Final = 240.0
#: Messages looked at per room and look (the newest).
RECENT: Final = 20

COLLEAGUES: Final = (BRUNO, CLAIRE, ERIC)

ROOM_TOPIC: Final = N_("Floods in the Somme: round-the-clock follow-up")
FORUM_TOPIC: Final = N_("Situation reports, open to every agent")

#: What each colleague says when the room opens (in this order, Bruno first).
OPENING: Final = {
    BRUNO.home: N_(
        "Good morning all. 8:00 report: the Corbie dike is holding, river at +3.20 m and rising "
        "slowly."
    ),
    CLAIRE.home: N_(
        "Roads D1 and D23 are closed between Corbie and Daours; diversion via the N29."
    ),
    ERIC.home: N_("The Red Cross has opened a reception centre in the Amiens gymnasium: 40 beds."),
}
WELCOME: Final = N_(
    "Welcome Alice! Answer here, or name one of us (@Bruno, @Claire, @Éric) to ask a question."
)
DIRECT_HELLO: Final = N_(
    "Hello Alice, it's Claire (DDT). Write to me here whenever you like. Type /help to see "
    "what you can do: /join to accept Bruno's invitation, /file to send a document…"
)
JOINED: Final = N_("Thanks for the invitation, I'm here.")
GREETINGS: Final = (N_("Hello {name}!"), N_("Hello {name}, good to have you with us."))
ANSWERS: Final = (
    N_("Good question. I'll check with the prefecture and come back to you within the hour."),
    N_("Not as far as I know; I'll ask the field teams."),
    N_("Yes, it's confirmed: the evacuation of the Saint-Maurice district is planned for 14:00."),
    N_("I have no news yet; the next report is at noon."),
)
ACKNOWLEDGEMENTS: Final = (
    N_("Noted, thanks {name}."),
    N_("Understood. I'll pass it on to the field teams."),
    N_("Thanks, that helps. I'm updating the map."),
    N_("OK for me."),
)
FILE_RECEIVED: Final = N_("Got “{file}”, thanks, I'm reading it.")
FORUM_POSTS: Final = (
    N_("Report: the Somme is stable at +3.25 m at Corbie; next measurement in one hour."),
    N_("Report: 112 people sheltered in Amiens, 35 in Abbeville. Needs: blankets, baby milk."),
    N_("Report: the D1 is open again to emergency vehicles only."),
    N_("Report: rain expected tonight (15 mm); the dike watch continues."),
)
ROOM_UPDATES: Final = (
    (CLAIRE, N_("Update: a second pump arrived at Daours; the water is going down in the centre.")),
    (ERIC, N_("Update: the reception centre needs two more volunteers for the night.")),
    (BRUNO, N_("Update: next coordination meeting at 18:00 on this channel.")),
)
THUMBS_UP: Final = "👍"
GREETING_WORDS: Final = ("bonjour", "salut", "hello", "hi", "coucou", "bonsoir")


@dataclasses.dataclass
class Colleague:
    """One simulated person: their rooms API and what they already answered."""

    person: Person
    rooms: Rooms
    #: Messages of Alice already handled (answered, or left alone), by id.
    handled: set[bytes] = dataclasses.field(default_factory=set)
    #: Rooms where Alice was already welcomed.
    welcomed: set[bytes] = dataclasses.field(default_factory=set)

    @property
    def account(self) -> AccountKey:
        return self.rooms.me.account.account_key

    @property
    def first_name(self) -> str:
        return self.person.name.split()[0]


def _folded(text: str) -> str:
    """Lower case, without accents: "Éric" and "eric" are the same name."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def addressed(text: str, names: list[str]) -> list[str]:
    """The first names in ``names`` that ``text`` mentions (``@Bruno`` or ``bruno``)."""
    words = {w.strip("@,.;:!?()«»\"'") for w in _folded(text).split()}
    return [name for name in names if _folded(name) in words]


def answer_for(
    text: str, file_name: str | None, asker: str, rng: random.Random, tr: Callable[[str], str]
) -> tuple[str, bool]:
    """What a colleague answers to ``text`` (or to a file), and whether as a reply to it."""
    if file_name is not None:
        return tr(FILE_RECEIVED).format(file=file_name), True
    if "?" in text:
        return tr(rng.choice(ANSWERS)), True
    words = set(_folded(text).replace(",", " ").replace("!", " ").split())
    if words & set(GREETING_WORDS):
        return tr(rng.choice(GREETINGS)).format(name=asker), False
    return tr(rng.choice(ACKNOWLEDGEMENTS)).format(name=asker), False


class Cell:
    """The three colleagues, and what they do next (see the module documentation)."""

    def __init__(
        self,
        root: Path,
        tr: Callable[[str], str],
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tr = tr
        self.rng = rng
        self.clock = clock
        self.people = {
            p.home: Colleague(p, open_rooms(Home(root / p.home), DEMO_PASSPHRASE, time.time))
            for p in COLLEAGUES
        }
        self.alice: AccountKey | None = None
        self.room: bytes | None = None
        self.forum: bytes | None = None
        self.direct: bytes | None = None
        self.opened: set[str] = set()
        self.alice_invited = False
        #: Actions due later: (when, order, action).
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0
        self._next_forum = 0.0
        self._next_update = 0.0
        self._updates = 0
        self._posts = 0
        self._turn = 0

    # --- scheduling ---------------------------------------------------------------------

    def later(self, action: Callable[[], None], pause: tuple[float, float] = PAUSE) -> None:
        self._order += 1
        when = self.clock() + self.rng.uniform(*pause)
        heapq.heappush(self._due, (when, self._order, action))

    def tick(self) -> None:
        """One look: set the scene, join invitations, answer Alice, run what is due."""
        for step in (self._set_scene, self._join_invitations, self._answer_alice, self._post):
            try:
                step()
            except P2PTchapError as exc:  # a refused action: say it in the log, go on
                log.warning("%s: %s", step.__name__, exc)
        while self._due and self._due[0][0] <= self.clock():
            _, _, action = heapq.heappop(self._due)
            try:
                action()
            except P2PTchapError as exc:
                log.warning("an action failed: %s", exc)

    # --- the scene ----------------------------------------------------------------------

    def _known(self, who: Colleague, person: Person) -> AccountKey | None:
        return who.rooms.account_by_email(person.email)

    def _set_scene(self) -> None:
        bruno, claire = self.people[BRUNO.home], self.people[CLAIRE.home]
        if self.alice is None:
            self.alice = self._known(bruno, ALICE)
        if self.room is None:
            # Everyone's certificate reaches Bruno's node by gossip first.
            others = [self._known(bruno, p) for p in (ALICE, CLAIRE, ERIC)]
            if None in others:
                return
            self.room = bruno.rooms.create(
                ROOM, topic=self.tr(ROOM_TOPIC), allow_externals=True
            ).room
            bruno.rooms.set_history(self.room, shared=True)
            for other in others[1:]:
                assert other is not None  # checked above
                bruno.rooms.invite(self.room, other)
            self.forum = bruno.rooms.create(FORUM, topic=self.tr(FORUM_TOPIC), public=True).room
            self._say(bruno, self.room, self.tr(OPENING[BRUNO.home]))
            self.opened.add(BRUNO.home)
            self._next_forum = self.clock() + 5
            log.info("room and forum created")
        if self.direct is None and self.alice is not None:
            self.direct = claire.rooms.direct(self.alice).room
            self._say(claire, self.direct, self.tr(DIRECT_HELLO))
        if (
            not self.alice_invited
            and self.alice is not None
            and self.opened >= {p.home for p in COLLEAGUES}
        ):
            assert self.room is not None
            bruno.rooms.invite(self.room, self.alice)
            self.alice_invited = True
            log.info("Alice invited")

    def _join_invitations(self) -> None:
        for who in self.people.values():
            for info in who.rooms.list_rooms():
                if info.membership is not Membership.INVITE:
                    continue
                who.rooms.join(info.room)
                if info.room == self.room:
                    self.later(functools.partial(self._open_room, who))
                elif not info.direct:
                    self.later(functools.partial(self._say, who, info.room, self.tr(JOINED)))
                log.info("%s joined %s", who.first_name, info.name or "a direct conversation")

    def _open_room(self, who: Colleague) -> None:
        assert self.room is not None
        self._say(who, self.room, self.tr(OPENING[who.person.home]))
        self.opened.add(who.person.home)

    # --- answering Alice ----------------------------------------------------------------

    def _joined_rooms(self, who: Colleague) -> list[bytes]:
        return [i.room for i in who.rooms.list_rooms() if i.membership is Membership.JOIN]

    def _answer_alice(self) -> None:
        if self.alice is None:
            return
        for who in self.people.values():
            for room in self._joined_rooms(who):
                state = who.rooms.state(room)
                if state.membership.get(self.alice) is not Membership.JOIN:
                    continue
                if room == self.room and who.person is BRUNO and room not in who.welcomed:
                    who.welcomed.add(room)
                    self.later(functools.partial(self._say, who, room, self.tr(WELCOME)))
                for message in who.rooms.messages(room, limit=RECENT):
                    if message.sender != self.alice or message.id in who.handled:
                        continue
                    if message.body is None and message.file is None:
                        continue  # its key has not arrived yet: looked at again later
                    who.handled.add(message.id)
                    if self._answers(who, room, message):
                        self.later(functools.partial(self._reply, who, room, message))
                    elif self.rng.random() < 0.3:
                        self.later(functools.partial(self._like, who, room, message))

    def _answers(self, who: Colleague, room: bytes, message: Message) -> bool:
        """Whether ``who`` is the one to answer ``message`` in ``room``."""
        members = [
            self.people[p.home]
            for p in COLLEAGUES
            if who.rooms.state(room).membership.get(self.people[p.home].account) is Membership.JOIN
        ]
        if len(members) == 1:  # a direct conversation, or a room with one of us
            return True
        named = addressed(
            (message.body or b"").decode("utf-8", "replace"), [m.first_name for m in members]
        )
        if named:
            return who.first_name in named
        # Nobody named: one of the members in turn, the same for every look.
        chosen = members[int.from_bytes(message.id[:4], "big") % len(members)]
        return chosen is who

    def _reply(self, who: Colleague, room: bytes, message: Message) -> None:
        text = (message.body or b"").decode("utf-8", "replace")
        file_name = message.file.name if message.file is not None else None
        answer, threaded = answer_for(text, file_name, message.name.split()[0], self.rng, self.tr)
        who.rooms.send(room, answer.encode(), reply_to=message.id if threaded else None)

    def _like(self, who: Colleague, room: bytes, message: Message) -> None:
        who.rooms.react(room, message.id, THUMBS_UP)

    def _say(self, who: Colleague, room: bytes, text: str) -> None:
        who.rooms.send(room, text.encode())

    # --- life in the cell ---------------------------------------------------------------

    def _post(self) -> None:
        now = self.clock()
        if self.forum is not None and self._next_forum and now >= self._next_forum:
            text = self.tr(FORUM_POSTS[self._posts % len(FORUM_POSTS)])
            self._say(self.people[BRUNO.home], self.forum, text)
            self._posts += 1
            self._next_forum = now + FORUM_EVERY
        if self.alice_invited and self.room is not None:
            if not self._next_update:
                self._next_update = now + ROOM_EVERY
            elif now >= self._next_update:
                person, line = ROOM_UPDATES[self._updates % len(ROOM_UPDATES)]
                self._say(self.people[person.home], self.room, self.tr(line))
                self._updates += 1
                self._next_update = now + ROOM_EVERY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the simulated colleagues of 'chat --demo'")
    parser.add_argument("folder", type=Path, help="the demo's folder (one home per person)")
    parser.add_argument("--lang", choices=("fr", "en"), default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        # Who answers and with which line: not a secret.
        cell = Cell(args.folder, Translator(args.lang), random.Random(args.seed))  # noqa: S311
    except P2PTchapError as exc:
        print(exc, file=sys.stderr)
        return 1
    log.info("colleagues ready")
    try:
        while True:
            cell.tick()
            time.sleep(TICK)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
