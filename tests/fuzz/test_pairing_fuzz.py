"""The pairing exchange with a hostile party on either side.

A man in the middle may send the client a false commitment or a damaged
offer, and the server a damaged hello.  Only typed remote errors come out,
and a client never accepts an offer other than the one the server committed
to; after the handshake, damaged transport messages are refused.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2ptchap.core import pairing
from p2ptchap.core.errors import DecodeError, RemoteError
from p2ptchap.core.noise import DecryptionError, HandshakeError, MalformedNoiseMessage
from tests.conftest import make_rng
from tests.fuzz.mutations import mutated_bytes
from tests.fuzz.support import Accepted, attempt, fuzz
from tests.fuzz.world import world

ERRORS = (DecodeError, HandshakeError, MalformedNoiseMessage, pairing.PairingError)


def _offer() -> pairing.Offer:
    w = world()
    return pairing.Offer("account", (w.org.trust_file,), w.alice.certificate)


@fuzz(100)
@given(
    seed=st.integers(0, 2**32), step=st.sampled_from(["commit", "hello", "offer"]), data=st.data()
)
def test_a_damaged_pairing_message(seed: int, step: str, data: st.DataObject) -> None:
    offer = _offer()
    server = pairing.PairingSession(client=False, rng=make_rng(seed), offer=offer)
    client = pairing.PairingSession(client=True, rng=make_rng(seed + 1))
    commit = server.commit()
    if step == "commit":
        commit = data.draw(mutated_bytes(commit))
    result = attempt(lambda: client.receive_commitment(commit), ERRORS)
    if not isinstance(result, Accepted):
        return
    hello = client.hello()
    if step == "hello":
        hello = data.draw(mutated_bytes(hello))
    answered = attempt(lambda: server.answer(hello), ERRORS)
    if not isinstance(answered, Accepted):
        return
    reply = answered.value
    if step == "offer":
        reply = data.draw(mutated_bytes(reply))
    received = attempt(lambda: client.receive_offer(reply), ERRORS)
    if isinstance(received, Accepted):
        # Whatever was damaged, an accepted offer is the committed one, and
        # the two sides then share keys (the codes the people compare agree).
        assert received.value == offer
        assert client.code == server.code
        sealed = client.seal(pairing.Refused("non"))
        assert server.open(sealed) == pairing.Refused("non")
        damaged = data.draw(mutated_bytes(client.seal(pairing.Refused("non"))))
        opened = attempt(lambda: server.open(damaged), (DecryptionError, MalformedNoiseMessage))
        assert not isinstance(opened, Accepted) or opened.value == pairing.Refused("non")
    else:
        assert isinstance(received.error, RemoteError)
