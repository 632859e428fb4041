"""The pairing exchange: short codes, a man in the middle, hostile messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import pairing
from p2ptchap.core.errors import DecodeError, RemoteError, VerificationError
from p2ptchap.core.keys import DeviceSecret, ExchangeSecret, Rng
from tests.conftest import Org

OFFER = pairing.Offer("authority", (b"trust file",))


def handshake(rng: Rng) -> tuple[pairing.PairingSession, pairing.PairingSession, pairing.Offer]:
    client = pairing.PairingSession(client=True, rng=rng)
    server = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
    client.receive_commitment(server.commit())
    reply = server.answer(client.hello())
    return client, server, client.receive_offer(reply)


def test_both_sides_show_the_same_code_and_talk(rng: Rng) -> None:
    client, server, offer = handshake(rng)
    assert offer == OFFER
    assert client.code == server.code
    assert len(client.code) == 7 and client.code[3] == " "
    assert server.open(client.seal(pairing.EnrolRequest(b"req"))) == pairing.EnrolRequest(b"req")
    assert client.open(server.seal(pairing.Issued(b"cert"))) == pairing.Issued(b"cert")


def test_a_man_in_the_middle_shows_different_codes(rng: Rng) -> None:
    # Mallory answers the client and, separately, talks to the server: two
    # handshakes, two codes that the two people see differ.
    client = pairing.PairingSession(client=True, rng=rng)
    mallory_as_server = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
    client.receive_commitment(mallory_as_server.commit())
    client.receive_offer(mallory_as_server.answer(client.hello()))
    mallory_as_client = pairing.PairingSession(client=True, rng=rng)
    server = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
    mallory_as_client.receive_commitment(server.commit())
    mallory_as_client.receive_offer(server.answer(mallory_as_client.hello()))
    assert client.code != server.code


def test_the_server_cannot_change_its_key_or_offer_after_committing(rng: Rng) -> None:
    # To search for a matching code, a man in the middle would have to pick
    # its key (or offer) after seeing the client's: the commitment forbids it.
    for other_offer in (OFFER, pairing.Offer("authority", (b"another trust file",))):
        client = pairing.PairingSession(client=True, rng=rng)
        committed = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
        client.receive_commitment(committed.commit())
        swapped = pairing.PairingSession(client=False, rng=rng, offer=other_offer)
        with pytest.raises(pairing.PairingError):
            client.receive_offer(swapped.answer(client.hello()))


def test_tampered_messages_are_rejected(rng: Rng) -> None:
    client = pairing.PairingSession(client=True, rng=rng)
    server = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
    client.receive_commitment(server.commit())
    reply = bytearray(server.answer(client.hello()))
    reply[-1] ^= 1
    with pytest.raises(RemoteError):
        client.receive_offer(bytes(reply))
    client, server, _ = handshake(rng)
    sealed = bytearray(client.seal(pairing.EnrolRequest(b"req")))
    sealed[5] ^= 1
    with pytest.raises(RemoteError):
        server.open(bytes(sealed))


def test_link_request_is_bound_to_the_session(rng: Rng) -> None:
    client, server, _ = handshake(rng)
    secret = DeviceSecret.generate(rng)
    exchange = ExchangeSecret.generate(rng).public_key()
    request = pairing.sign_link(secret, exchange, "tablette", client.handshake_hash)
    received = server.open(client.seal(request))
    assert isinstance(received, pairing.LinkRequest)
    received.verify(server.handshake_hash)
    # The same signed request replayed into another session fails.
    _, other_server, _ = handshake(rng)
    with pytest.raises(VerificationError):
        received.verify(other_server.handshake_hash)


def test_every_message_round_trips(org: Org, rng: Rng) -> None:
    secret = DeviceSecret.generate(rng)
    messages: list[pairing.Message] = [
        OFFER,
        pairing.Offer("account", (b"a", b"b"), b"cert"),
        pairing.EnrolRequest(b"r"),
        pairing.sign_link(secret, ExchangeSecret.generate(rng).public_key(), "pc", b"h" * 64),
        pairing.Issued(b"c"),
        pairing.Linked(b"a", b"d", (b"t",), (), (b"x", b"y")),
        pairing.Refused("not approved"),
    ]
    for message in messages:
        assert pairing.decode(pairing.encode(message)) == message


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        pairing.decode(data)
    except DecodeError:
        return


def test_out_of_order_use_is_refused(rng: Rng) -> None:
    server = pairing.PairingSession(client=False, rng=rng, offer=OFFER)
    with pytest.raises(pairing.PairingUsageError):
        server.hello()
    with pytest.raises(pairing.PairingUsageError):
        pairing.PairingSession(client=True, rng=rng).hello()  # before the commitment
    with pytest.raises(pairing.PairingUsageError):
        server.seal(pairing.Refused("x"))
    with pytest.raises(pairing.PairingUsageError):
        _ = server.code
