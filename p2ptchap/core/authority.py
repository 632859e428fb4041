"""Organisation authorities and the trust store a node is configured with.

An authority is an Ed25519 key, kept offline by an administrator, with a
name and the list of e-mail domains whose people it certifies as *agents*.
Its **trust file** is a COSE_Sign1 self-signed by that key, binding name
and domains to it, so nobody can widen an authority's domains by editing
the file.  The file is authentic only if its fingerprint matches the one the
administrator announces out of band (in person, on paper, in the crisis
plan): :meth:`Authority.fingerprint` is what they compare.

A node may trust several authorities at once (federated administrations).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Final

from p2ptchap.core import codec, cose
from p2ptchap.core.addresses import (
    DomainRule,
    email_domain,
    normalise_display_name,
)
from p2ptchap.core.errors import DecodeError, UsageError, VerificationError, VerificationFailure
from p2ptchap.core.keys import KEY_SIZE, AuthorityKey, AuthoritySecret

TRUST_CONTENT_TYPE: Final = "application/p2ptchap-authority+cbor"
MAX_NAME_LENGTH: Final = 200
MAX_DOMAINS: Final = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Authority:
    """The public description of an authority, as read from its trust file."""

    name: str
    domains: tuple[DomainRule, ...]
    key: AuthorityKey
    created: int

    @property
    def key_id(self) -> bytes:
        return self.key.key_id

    def fingerprint(self) -> str:
        return self.key.fingerprint()

    def covers(self, normalised_email: str) -> bool:
        """Whether an address is in one of this authority's agent domains."""
        domain = email_domain(normalised_email)
        return any(rule.matches(domain) for rule in self.domains)


def _payload(name: str, domains: Iterable[DomainRule], key: AuthorityKey, created: int) -> bytes:
    return codec.encode(
        {
            "name": name,
            "domains": [str(rule) for rule in domains],
            "key": bytes(key),
            "created": created,
        }
    )


def create_trust_file(
    secret: AuthoritySecret, name: str, domains: Iterable[str], now: int
) -> tuple[Authority, bytes]:
    """Describe a new authority; return it and its self-signed trust file.

    Raises :class:`UsageError` (or :class:`InvalidAddress`) for an empty or
    overlong name, no domain, or a malformed domain rule.
    """
    name = normalise_display_name(name, MAX_NAME_LENGTH)
    rules = tuple(dict.fromkeys(DomainRule.parse(d) for d in domains))
    if not rules or len(rules) > MAX_DOMAINS:
        raise UsageError(
            "authority needs 1 to 64 domains",
            user_message="Give the authority between 1 and 64 agent domains.",
        )
    key = secret.public_key()
    authority = Authority(name, rules, key, now)
    data = cose.sign(_payload(name, rules, key, now), TRUST_CONTENT_TYPE, key.key_id, secret)
    return authority, data


def parse_trust_file(data: bytes) -> Authority:
    """Read and verify a trust file; raise :class:`VerificationError`.

    Guarantees the returned description was signed by the key it names.
    """
    try:
        message = cose.parse(data, TRUST_CONTENT_TYPE)
        body = codec.expect_map(codec.decode(message.payload, cose.SIGN1_LIMITS), "trust file")
        codec.only_keys(body, ("name", "domains", "key", "created"), "trust file")
        key = AuthorityKey(codec.get_bytes(body, "key", "trust file", size=KEY_SIZE))
        name = codec.get_text(body, "name", "trust file", MAX_NAME_LENGTH)
        if normalise_display_name(name, MAX_NAME_LENGTH) != name:
            raise DecodeError("trust file: name is not normalised")
        raw_domains = codec.expect_list(codec.field(body, "domains", "trust file"), "domains")
        if not raw_domains or len(raw_domains) > MAX_DOMAINS:
            raise DecodeError("trust file: wrong number of domains")
        rules = []
        for raw in raw_domains:
            if not isinstance(raw, str):
                raise DecodeError("trust file: domain is not text")
            rule = DomainRule.parse(raw)
            if str(rule) != raw:
                raise DecodeError("trust file: domain rule is not normalised")
            rules.append(rule)
        created = codec.get_time(body, "created", "trust file")
    except (DecodeError, UsageError) as exc:
        raise VerificationError(VerificationFailure.MALFORMED, f"trust file: {exc}") from exc
    if message.kid != key.key_id:
        raise VerificationError(VerificationFailure.MISMATCH, "trust file: kid is not the key's")
    message.verify(key)
    return Authority(name, tuple(rules), key, created)


class TrustConflict(UsageError):
    """Two trusted authorities claim the same e-mail domain."""


class TrustStore:
    """The authorities a node trusts, by key id.

    Each e-mail domain belongs to at most one trusted authority: only that
    authority may certify addresses of the domain, as agents or externals,
    so no other administration can issue a certificate in the name of one
    of its people.
    """

    def __init__(self, authorities: Iterable[Authority] = ()) -> None:
        self._by_id: dict[bytes, Authority] = {}
        for authority in authorities:
            self.add(authority)

    def add(self, authority: Authority) -> None:
        """Trust ``authority``; raise :class:`TrustConflict` if its domains overlap another's."""
        for other in self._by_id.values():
            if other.key == authority.key:
                continue
            for rule in authority.domains:
                for theirs in other.domains:
                    if rule.overlaps(theirs):
                        raise TrustConflict(
                            f"{rule} overlaps {theirs}",
                            user_message=(
                                "The authorities '{first}' and '{second}' both claim "
                                "{domain}; a node can trust only one authority per domain."
                            ),
                            first=other.name,
                            second=authority.name,
                            domain=str(rule),
                        )
        self._by_id[authority.key_id] = authority

    def owner_of(self, normalised_email: str) -> Authority | None:
        """The trusted authority whose domains cover the address, if any."""
        for authority in self._by_id.values():
            if authority.covers(normalised_email):
                return authority
        return None

    def get(self, key_id: bytes) -> Authority:
        """The authority with this key id; raise ``VerificationError(UNKNOWN_AUTHORITY)``."""
        try:
            return self._by_id[key_id]
        except KeyError:
            raise VerificationError(
                VerificationFailure.UNKNOWN_AUTHORITY, f"no trusted authority {key_id.hex()}"
            ) from None

    def __iter__(self) -> Iterator[Authority]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
