"""``p2ptchap chat``: the full-screen terminal app (prompt-toolkit, trio as its guest).

Layout: the rooms list on the left (unread counts, mentions in bold), the
open room on the right (its name and topic, the timeline, notices, the
composer), a status bar at the bottom (peers, discovery, downloads, and
the warning when no peer is found).  prompt-toolkit owns the terminal and
runs on asyncio; trio runs as a guest on that loop
(:func:`trio.lowlevel.start_guest_run`) and does everything that waits:
the database thread, the node's control socket, a node started for the
session.  Key handlers only hand work to trio; drawing only reads the
session's snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import trio
from prompt_toolkit.application import Application
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, WordCompleter
from prompt_toolkit.data_structures import Point
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from p2ptchap.api import control
from p2ptchap.core.errors import N_, P2PTchapError
from p2ptchap.i18n import Translator
from p2ptchap.ui.tui import commands
from p2ptchap.ui.tui.session import ChatSession, Item, human_size, notify_desktop

#: After this long with a node and no peer, the status bar says multicast may be blocked.
LONELY_AFTER = 15.0

STYLE = Style.from_dict(
    {
        "rooms": "bg:#1c2230 #c0c8d8",
        "rooms.current": "bg:#3a4a6a #ffffff bold",
        "rooms.unread": "bold",
        "rooms.mention": "#ff8060 bold",
        "rooms.title": "#8090a8",
        "header": "bg:#2a3548 #ffffff bold",
        "header.topic": "bg:#2a3548 #a8b4c8",
        "time": "#7a8494",
        "sender": "#6ab0ff bold",
        "sender.mine": "#7fd08a bold",
        "external": "#ffb347 bold",
        "unverified": "#ff6b6b",
        "waiting": "#8a8a8a italic",
        "mention": "bg:#4a3020",
        "reply": "#8a94a8 italic",
        "file": "#d0a0ff",
        "meta": "#7a8494",
        "notice": "#a8b4c8",
        "notice.error": "#ff6b6b",
        "notice.alert": "#ffd060 bold",
        "status": "bg:#1c2230 #c0c8d8",
        "status.warning": "bg:#5a2020 #ffffff bold",
        "composer": "",
        "prompt": "#6ab0ff bold",
    }
)


class CommandCompleter(Completer):
    """``/commands``, then ``@names`` of the room's people and room names."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session

    def get_completions(self, document: Document, complete_event: Any) -> Any:
        text = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        if text.startswith("/") and " " not in text:
            yield from WordCompleter(
                [f"/{n}" for n in commands.names()], WORD=True
            ).get_completions(document, complete_event)
            return
        if word.startswith("@"):
            names = {i.sender for i in self.session.snapshot.timeline}
            for name in sorted(names):
                if name.casefold().startswith(word[1:].casefold()):
                    yield Completion("@" + name, start_position=-len(word), display=name)
            return
        if text.startswith(("/go ", "/aller ", "/join ", "/rejoindre ")):
            typed = text.split(" ", 1)[1]
            for entry in self.session.snapshot.rooms:
                if entry.name.casefold().startswith(typed.casefold()):
                    yield Completion(entry.name, start_position=-len(typed))


class ChatApp:
    """The prompt-toolkit application around a :class:`ChatSession`."""

    def __init__(
        self,
        session: ChatSession,
        tr: Translator,
        *,
        input: Input | None = None,
        output: Output | None = None,
        bell: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.tr = tr
        self.scroll = 0
        self.started = time.monotonic()
        self.node_started = False
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self.completer = CommandCompleter(session)
        self.composer = TextArea(
            height=Dimension(min=1, max=6),
            dont_extend_height=True,
            multiline=True,
            wrap_lines=True,
            history=InMemoryHistory(),
            completer=self.completer,
            complete_while_typing=True,
            prompt=[("class:prompt", "› ")],
            style="class:composer",
        )
        self.rooms_control = FormattedTextControl(self._rooms_text, focusable=False)
        self.timeline_control = FormattedTextControl(
            self._timeline_text, focusable=False, get_cursor_position=self._timeline_cursor
        )
        self.notices_control = FormattedTextControl(self._notices_text, focusable=False)
        body = HSplit(
            [
                Window(FormattedTextControl(self._header_text), height=1, style="class:header"),
                Window(self.timeline_control, wrap_lines=True),
                Window(height=1, char="─", style="class:meta"),
                Window(
                    self.notices_control,
                    height=Dimension(max=7),
                    wrap_lines=True,
                    dont_extend_height=True,
                ),
                Window(height=1, char="─", style="class:meta"),
                self.composer,
            ]
        )
        root = HSplit(
            [
                VSplit(
                    [
                        Window(self.rooms_control, width=28, style="class:rooms"),
                        Window(width=1, char="│", style="class:meta"),
                        body,
                    ]
                ),
                Window(FormattedTextControl(self._status_text), height=1, style="class:status"),
            ]
        )
        self.app: Application[int] = Application(
            layout=Layout(root, focused_element=self.composer),
            key_bindings=self._bindings(),
            style=STYLE,
            full_screen=True,
            mouse_support=False,
            input=input,
            output=output,
        )
        # Alt-Enter comes as Escape + Enter in one read: a short wait after
        # Escape is enough to tell it from Escape alone, and typing goes on at once.
        self.app.timeoutlen = 0.3
        self.app.ttimeoutlen = 0.05
        self._bell = bell or self._terminal_bell
        session.on_change = self.app.invalidate
        session.on_alert = self._alert

    # --- keys --------------------------------------------------------------------------------

    def _bindings(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("enter")
        def _submit(event: KeyPressEvent) -> None:
            buffer = self.composer.buffer
            if buffer.complete_state is not None and buffer.complete_state.current_completion:
                buffer.apply_completion(buffer.complete_state.current_completion)
                return
            text = buffer.text
            if not text.strip():
                return
            buffer.append_to_history()
            buffer.reset()
            self.scroll = 0
            self.session.shown = None
            self.spawn(self._submit, text)

        @keys.add("tab")
        def _complete(event: KeyPressEvent) -> None:
            buffer = self.composer.buffer
            if buffer.complete_state is not None and buffer.complete_state.completions:
                buffer.complete_next()
                return
            # Typed before the menu came (completions are computed while typing,
            # in the background): complete now, as a shell does — the only
            # candidate, else what all candidates share, and show the menu.
            found = list(
                self.completer.get_completions(
                    buffer.document, CompleteEvent(completion_requested=True)
                )
            )
            if len(found) == 1:
                buffer.apply_completion(found[0])
            elif found:
                typed = -found[0].start_position
                shared = os.path.commonprefix([c.text for c in found])  # noqa: RUF071 - text
                if len(shared) > typed:
                    buffer.insert_text(shared[typed:])
                buffer.start_completion()

        @keys.add("escape", "enter")
        def _newline(event: KeyPressEvent) -> None:
            self.composer.buffer.insert_text("\n")

        @keys.add("escape")
        def _close(event: KeyPressEvent) -> None:
            buffer = self.composer.buffer
            if buffer.complete_state is not None:
                buffer.cancel_completion()
            elif self.session.shown is not None:
                self.session.close_panel()
            elif self.session.pending is not None:
                self.session.pending = None
                self.session.say(N_("Cancelled."))

        @keys.add("c-n")
        def _next(event: KeyPressEvent) -> None:
            self.scroll = 0
            self.spawn(self.session.move, 1)

        @keys.add("c-p")
        def _previous(event: KeyPressEvent) -> None:
            self.scroll = 0
            self.spawn(self.session.move, -1)

        @keys.add("pageup")
        def _up(event: KeyPressEvent) -> None:
            self.scroll = min(self.scroll + 10, max(0, self._line_count() - 1))

        @keys.add("pagedown")
        def _down(event: KeyPressEvent) -> None:
            self.scroll = max(0, self.scroll - 10)

        @keys.add("c-q")
        @keys.add("c-c")
        def _quit(event: KeyPressEvent) -> None:
            self.app.exit(result=0)

        return keys

    async def _submit(self, text: str) -> None:
        await self.session.submit(text)
        if self.session.quit_requested:
            self.app.exit(result=0)

    def spawn(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` (a coroutine function) as a trio task."""
        if self.token is None or self.nursery is None:
            return
        nursery = self.nursery
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(lambda: nursery.start_soon(function, *args))

    # --- drawing -----------------------------------------------------------------------------

    def _rooms_text(self) -> StyleAndTextTuples:
        tr = self.tr
        lines: StyleAndTextTuples = [("class:rooms.title", " " + tr("Rooms") + "\n")]
        for entry in self.session.snapshot.rooms:
            style = "class:rooms"
            if entry.room == self.session.current:
                style = "class:rooms.current"
            elif entry.mentioned:
                style = "class:rooms.mention"
            elif entry.unread:
                style = "class:rooms.unread"
            mark = {"direct": "@", "public": "#", "private": "🔒"}.get(entry.kind, " ")
            if entry.membership is not None and entry.membership.value == "invite":
                mark = "✉"
            count = (
                f" ({entry.unread})" if entry.unread and entry.room != self.session.current else ""
            )
            name = entry.name[: 22 - len(count)]
            lines.append((style, f" {mark} {name}{count}\n"))
        if not self.session.snapshot.rooms:
            lines.append(("class:rooms.title", " " + tr("no room yet: /create NAME") + "\n"))
        return lines

    def _header_text(self) -> StyleAndTextTuples:
        info = self.session.snapshot.room
        if info is None:
            return [("class:header", " p2ptchap — " + self.tr("/help lists the commands"))]
        kind = self.tr("direct" if info.direct else "public" if info.public else "private")
        parts: StyleAndTextTuples = [("class:header", f" {info.name or '—'} ({kind})")]
        if info.topic:
            parts.append(("class:header.topic", f" — {info.topic}"))
        if info.allow_externals:
            parts.append(("class:header.topic", " · " + self.tr("externals allowed")))
        return parts

    def _timeline_lines(self) -> list[StyleAndTextTuples]:
        lines: list[StyleAndTextTuples] = []
        if self.session.shown is not None:
            title, notices = self.session.shown
            lines.append(
                [("class:header", f" {title} "), ("class:meta", "  " + self.tr("(Esc closes)"))]
            )
            for notice in notices:
                style = "class:notice.error" if notice.kind == "error" else ""
                lines.append([(style, notice.text)])
            return lines
        for item in self.session.snapshot.timeline:
            lines.extend(self._item(item))
        if not lines:
            lines.append([("class:meta", self.tr("No message yet."))])
        return lines

    def _item(self, item: Item) -> list[StyleAndTextTuples]:
        tr = self.tr
        stamp = time.strftime("%H:%M", time.localtime(item.ts / 1000))
        head: StyleAndTextTuples = [("class:time", f"#{item.number} {stamp} ")]
        head.append(("class:sender.mine" if item.mine else "class:sender", item.sender))
        if item.external:
            head.append(("class:external", " " + tr("[external]")))
        if not item.verified:
            head.append(("class:unverified", " " + tr("[unverified device]")))
        head.append(("", " "))
        out: list[StyleAndTextTuples] = []
        if item.reply is not None:
            out.append([("class:reply", "  ↳ " + tr("in reply to {who}").format(who=item.reply))])
        body_style = "class:waiting" if item.waiting else ("class:mention" if item.mention else "")
        text_lines = item.text.split("\n") if item.text else [""]
        first = [*head, (body_style, text_lines[0])]
        if item.edited:
            first.append(("class:meta", " " + tr("(edited)")))
        out.append(first)
        out.extend([[(body_style, "    " + rest)] for rest in text_lines[1:]])
        if item.file is not None:
            card = item.file
            state = tr(card.state)
            if card.state == "partial" and card.size:
                state = f"{state} {card.held * 100 // card.size} %"
            out.append(
                [
                    (
                        "class:file",
                        f"  📎 {card.name} — {human_size(card.size)}, {card.mime} — {state}"
                        + " · /save "
                        + str(item.number),
                    )
                ]
            )
        meta: list[str] = []
        if item.reactions:
            meta.append(" ".join(f"{key} {count}" for key, count in item.reactions))
        if item.delivery is not None and item.delivery[1]:
            received, expected = item.delivery
            meta.append(
                tr("received by {received}/{expected}").format(received=received, expected=expected)
            )
        if meta:
            out.append([("class:meta", "    " + " · ".join(meta))])
        return out

    def _line_count(self) -> int:
        return len(self._timeline_lines())

    def _timeline_text(self) -> StyleAndTextTuples:
        fragments: StyleAndTextTuples = []
        for line in self._timeline_lines():
            fragments.extend(line)
            fragments.append(("", "\n"))
        return fragments

    def _timeline_cursor(self) -> Point:
        return Point(0, max(0, self._line_count() - 1 - self.scroll))

    def _notices_text(self) -> StyleAndTextTuples:
        fragments: StyleAndTextTuples = []
        for notice in list(self.session.notices)[-7:]:
            style = {"error": "class:notice.error", "alert": "class:notice.alert"}.get(
                notice.kind, "class:notice"
            )
            fragments.append((style, notice.text + "\n"))
        if self.session.pending is not None:
            fragments.append(("class:notice.alert", "? "))
        return fragments

    def _status_text(self) -> StyleAndTextTuples:
        tr = self.tr
        session = self.session
        if session.peers is None:
            text = (
                tr("no node running: starting one…")
                if self.node_started
                else tr("no node running: start one with 'p2ptchap up'")
            )
            return [("class:status.warning", " " + text)]
        status = session.node_status or {}
        discovery = tr("mDNS on") if status.get("mdns") else tr("mDNS off")
        parts = [tr("{count} peer(s) connected").format(count=len(session.peers)), discovery]
        for name, held, size in session.downloads():
            parts.append(f"⇣ {name} {held * 100 // max(size, 1)} %")
        waiting = status.get("waiting_for_keys")
        if waiting:
            parts.append(tr("{count} message(s) waiting for keys").format(count=waiting))
        line: StyleAndTextTuples = [("class:status", " " + " · ".join(parts))]
        if not session.peers and time.monotonic() - self.started > LONELY_AFTER:
            line.append(
                (
                    "class:status.warning",
                    " "
                    + tr(
                        "No peer found: multicast may be blocked here; add static peers "
                        "(p2ptchap up --peer ADDRESS:PORT)."
                    ),
                )
            )
        return line

    # --- alerts ------------------------------------------------------------------------------

    def _terminal_bell(self) -> None:
        self.app.output.bell()
        self.app.output.flush()

    def _alert(self, title: str, text: str) -> None:
        self._bell()
        notify_desktop(title, text)

    # --- running -----------------------------------------------------------------------------

    async def trio_main(self, ready: Callable[[BaseException | None], None]) -> None:
        """The trio side: open the session, follow the node, run the user's actions."""
        try:
            await self.session.open()
        except BaseException as exc:  # noqa: BLE001 - handed to the host, which reports it
            ready(exc)
            return
        self.token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self.session.run_background)
                ready(None)
                await trio.sleep_forever()
        finally:
            self.nursery = None

    def stop_trio(self) -> None:
        if self.token is not None and self.nursery is not None:
            nursery = self.nursery
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(nursery.cancel_scope.cancel)

    async def run_async(self) -> int:
        """Run trio as a guest, then the app; ``1`` with a sentence if the session cannot open."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[BaseException | None] = loop.create_future()
        finished: asyncio.Future[None] = loop.create_future()

        def on_ready(error: BaseException | None) -> None:
            if not ready.done():
                ready.set_result(error)

        def on_done(outcome: Any) -> None:
            if not ready.done():
                ready.set_result(None)
            if not finished.done():
                finished.set_result(None)
            with contextlib.suppress(BaseException):
                outcome.unwrap()

        trio.lowlevel.start_guest_run(
            self.trio_main,
            on_ready,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=on_done,
            host_uses_signal_set_wakeup_fd=True,
        )
        error = await ready
        if error is not None:
            await finished
            self.session.db.close()
            if isinstance(error, P2PTchapError):
                print(error.render(self.tr), file=sys.stderr)
                return 1
            raise error
        try:
            result = await self.app.run_async()
        finally:
            self.stop_trio()
            await finished
            self.session.close()
        return result or 0


def start_node(home_root: Any, passphrase: str, log_path: Any) -> subprocess.Popen[bytes]:
    """Start ``p2ptchap up`` for this home as a child process (``chat`` with no node running)."""
    env = {**os.environ, "P2PTCHAP_PASSPHRASE": passphrase}
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(  # noqa: S603 - our own program
            [sys.executable, "-m", "p2ptchap", "--home", str(home_root), "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()


def node_running(home_root: Any) -> bool:
    try:
        control.call(home_root, "status", timeout=2.0)
    except control.NodeNotRunning:
        return False
    except P2PTchapError:
        return True
    return True


UI_WORDS = (
    N_("Rooms"),
    N_("no room yet: /create NAME"),
    N_("/help lists the commands"),
    N_("externals allowed"),
    N_("No message yet."),
    N_("[external]"),
    N_("[unverified device]"),
    N_("in reply to {who}"),
    N_("(edited)"),
    N_("(Esc closes)"),
    N_("received by {received}/{expected}"),
    N_("no node running: starting one…"),
    N_("no node running: start one with 'p2ptchap up'"),
    N_("mDNS on"),
    N_("mDNS off"),
    N_("{count} peer(s) connected"),
    N_("{count} message(s) waiting for keys"),
    N_(
        "No peer found: multicast may be blocked here; add static peers "
        "(p2ptchap up --peer ADDRESS:PORT)."
    ),
    N_("complete"),
    N_("partial"),
    N_("wanted"),
    N_("remote"),
    N_("locked"),
)
