"""Noise handshake patterns as data (Noise revision 34, §7 and §9).

A pattern is a table: the tokens each side contributes before the handshake
(pre-messages) and the tokens of each handshake message.  The handshake
engine in :mod:`p2ptchap.core.noise` interprets any such table, so adding a
pattern never means adding code.

Messages alternate: message 0 is written by the initiator, message 1 by the
responder, and so on.  One-way patterns (``N``, ``K``, ``X``) have a single
message, and only the initiator may send afterwards.

PSK modifiers (§9.2) are applied by :func:`resolve_pattern` to the base
table: ``psk0`` puts a ``psk`` token at the start of the first message,
``pskN`` (N ≥ 1) puts one at the end of message N.  Several modifiers join with
``+`` (``NNpsk0+psk2``).

Message sizes are computed for the suite p2ptchap uses (X25519 keys, a
16-byte AEAD tag).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from p2ptchap.core.errors import UsageError

#: Size of an X25519 public key and of a ChaChaPoly authentication tag.
DHLEN = 32
TAGLEN = 16


class Token(enum.Enum):
    """A token of a message pattern (§7.1, §9.1)."""

    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"
    PSK = "psk"


#: Tokens that mix a Diffie-Hellman result into the chaining key.  The value's
#: first letter names the initiator's key, the second the responder's.
DH_TOKENS = frozenset({Token.EE, Token.ES, Token.SE, Token.SS})


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """One resolved handshake pattern, modifiers included.

    ``messages[i]`` is written by the initiator when ``i`` is even and by the
    responder when it is odd.  Pre-messages hold at most an ``s`` token: the
    fallback patterns, whose pre-message is ``e``, are not supported.
    """

    name: str
    initiator_premessage: tuple[Token, ...]
    responder_premessage: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]
    #: One-way patterns have a single message, initiator to responder.
    one_way: bool

    @property
    def psk_count(self) -> int:
        """How many pre-shared keys the handshake consumes."""
        return sum(message.count(Token.PSK) for message in self.messages)

    def premessage(self, initiator: bool) -> tuple[Token, ...]:
        """The pre-message tokens of the given role."""
        return self.initiator_premessage if initiator else self.responder_premessage

    def sent_tokens(self, initiator: bool) -> tuple[Token, ...]:
        """Every token of every message the given role writes."""
        return tuple(
            token for message in self.messages[0 if initiator else 1 :: 2] for token in message
        )

    def needs_static(self, initiator: bool) -> bool:
        """Whether the given role must have a static key pair."""
        return Token.S in self.premessage(initiator) or Token.S in self.sent_tokens(initiator)

    def needs_remote_static(self, initiator: bool) -> bool:
        """Whether the given role must know the peer's static key in advance."""
        return Token.S in self.premessage(not initiator)

    def message_size(self, index: int, payload_size: int) -> int:
        """The exact size of message ``index`` when it carries ``payload_size`` bytes.

        The size follows from the tokens alone: a static key or a payload
        carries a tag exactly when a cipher key is in place, and one is in
        place from the first DH or ``psk`` token on — or, in PSK handshakes,
        from the first ``e``, which then also calls MixKey (§9.2).
        """
        keyed = any(self._sets_key(token) for message in self.messages[:index] for token in message)
        size = 0
        for token in self.messages[index]:
            if token is Token.E:
                size += DHLEN
            elif token is Token.S:
                size += DHLEN + (TAGLEN if keyed else 0)
            keyed = keyed or self._sets_key(token)
        return size + payload_size + (TAGLEN if keyed else 0)

    def _sets_key(self, token: Token) -> bool:
        return token is not Token.S and (token is not Token.E or self.psk_count > 0)


# Base patterns, transcribed from the specification: (initiator pre-message,
# responder pre-message, messages).  Tokens are comma-separated, messages are
# separated by ";".
_BASE: dict[str, tuple[str, str, str]] = {
    # One-way patterns (§7.4).
    "N": ("", "s", "e, es"),
    "K": ("s", "s", "e, es, ss"),
    "X": ("", "s", "e, es, s, ss"),
    # Fundamental interactive patterns (§7.4).
    "NN": ("", "", "e; e, ee"),
    "NK": ("", "s", "e, es; e, ee"),
    "NX": ("", "", "e; e, ee, s, es"),
    "KN": ("s", "", "e; e, ee, se"),
    "KK": ("s", "s", "e, es, ss; e, ee, se"),
    "KX": ("s", "", "e; e, ee, se, s, es"),
    "XN": ("", "", "e; e, ee; s, se"),
    "XK": ("", "s", "e, es; e, ee; s, se"),
    "XX": ("", "", "e; e, ee, s, es; s, se"),
    "IN": ("", "", "e, s; e, ee, se"),
    "IK": ("", "s", "e, es, s, ss; e, ee, se"),
    "IX": ("", "", "e, s; e, ee, se, s, es"),
    # Deferred patterns (§7.5).
    "NK1": ("", "s", "e; e, ee, es"),
    "NX1": ("", "", "e; e, ee, s; es"),
    "X1N": ("", "", "e; e, ee; s; se"),
    "X1K": ("", "s", "e, es; e, ee; s; se"),
    "XK1": ("", "s", "e; e, ee, es; s, se"),
    "X1K1": ("", "s", "e; e, ee, es; s; se"),
    "X1X": ("", "", "e; e, ee, s, es; s; se"),
    "XX1": ("", "", "e; e, ee, s; es, s, se"),
    "X1X1": ("", "", "e; e, ee, s; es, s; se"),
    "K1N": ("s", "", "e; e, ee; se"),
    "K1K": ("s", "s", "e, es; e, ee; se"),
    "KK1": ("s", "s", "e; e, ee, se, es"),
    "K1K1": ("s", "s", "e; e, ee, es; se"),
    "K1X": ("s", "", "e; e, ee, s, es; se"),
    "KX1": ("s", "", "e; e, ee, se, s; es"),
    "K1X1": ("s", "", "e; e, ee, s; se, es"),
    "I1N": ("", "", "e, s; e, ee; se"),
    "I1K": ("", "s", "e, es, s; e, ee; se"),
    "IK1": ("", "s", "e, s; e, ee, se, es"),
    "I1K1": ("", "s", "e, s; e, ee, es; se"),
    "I1X": ("", "", "e, s; e, ee, s, es; se"),
    "IX1": ("", "", "e, s; e, ee, se, s; es"),
    "I1X1": ("", "", "e, s; e, ee, s; se, es"),
}
_ONE_WAY = frozenset({"N", "K", "X"})

_NAME = re.compile(
    r"(?P<base>[NKXI1]+)(?P<modifiers>psk(?:0|[1-9][0-9]*)(?:\+psk(?:0|[1-9][0-9]*))*)?"
)


class UnknownPattern(UsageError):
    """The handshake pattern name is not one this implementation supports."""

    default_message = "The Noise handshake pattern is not supported."


def _tokens(text: str) -> tuple[Token, ...]:
    return tuple(Token(part.strip()) for part in text.split(",")) if text else ()


def supported_patterns() -> tuple[str, ...]:
    """Names of the base patterns (without modifiers) this module knows."""
    return tuple(_BASE)


def resolve_pattern(name: str) -> HandshakePattern:
    """Return the pattern called ``name``, PSK modifiers applied.

    Raises :class:`UnknownPattern` for an unknown base pattern, a malformed or
    repeated modifier, or a ``pskN`` beyond the last message.
    """
    match = _NAME.fullmatch(name)
    if match is None or match["base"] not in _BASE:
        raise UnknownPattern(f"unknown Noise pattern {name!r}")
    pre_i, pre_r, body = _BASE[match["base"]]
    messages = [list(_tokens(part)) for part in body.split(";")]
    modifiers = match["modifiers"].split("+") if match["modifiers"] else []
    positions = [int(modifier.removeprefix("psk")) for modifier in modifiers]
    if len(set(positions)) != len(positions):
        raise UnknownPattern(f"repeated PSK modifier in {name!r}")
    for position in positions:
        if position == 0:
            messages[0].insert(0, Token.PSK)
        elif position <= len(messages):
            messages[position - 1].append(Token.PSK)
        else:
            raise UnknownPattern(f"{name!r}: psk{position} is beyond the last message")
    # §9.3 forbids sending encrypted data after a "psk" token before sending
    # an ephemeral key.  Every base pattern opens each party's first message
    # with "e", so no placement of modifiers can break that rule (a test
    # checks the table for this property).
    return HandshakePattern(
        name=name,
        initiator_premessage=_tokens(pre_i),
        responder_premessage=_tokens(pre_r),
        messages=tuple(tuple(message) for message in messages),
        one_way=match["base"] in _ONE_WAY,
    )
