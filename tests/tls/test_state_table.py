"""The handshake state table (mstls/tls/states.py) against the engines.

Real handshakes, message by message (:class:`~tests.tls.driver.EnginePair`),
must take exactly the transitions in the table -- every entry and every branch
-- and hypothesis sweeps (role x state x message type x epoch): a pair the
table has makes progress to one of its next states, anything else is an
``unexpected_message`` alert (RFC 8446 §6.2) raised before the body is read.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.anti_replay import StrikeRegister
from mstls.tls.client import ClientHandshake
from mstls.tls.config import TLSConfig
from mstls.tls.engine import TLSHandshake
from mstls.tls.extensions import HandshakeType
from mstls.tls.groups import NamedGroup
from mstls.tls.messages import NewSessionTicket, frame_message
from mstls.tls.server import ServerHandshake
from mstls.tls.states import STARTED, TRANSITIONS, Epoch, HandshakeState, Role
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing
from tests.certs import get_pki

from .driver import EnginePair, Message, Step, client_config, server_config

CLASSES: dict[Role, type[TLSHandshake]] = {
    Role.CLIENT: ClientHandshake,
    Role.SERVER: ServerHandshake,
}
TICKET = Message(
    Epoch.ONE_RTT,
    frame_message(
        HandshakeType.new_session_ticket, NewSessionTicket(60, 1, b"n", b"ticket", {}).encode()
    ),
)


def _configs(name: str) -> tuple[TLSConfig, TLSConfig]:
    pki = get_pki()
    mutual = dict(certificate_chain=[pki.client.certificate], private_key=pki.client.private_key)
    retry_client = dict(key_share_groups=[NamedGroup.x25519])
    retry_server = dict(groups=[NamedGroup.secp256r1, NamedGroup.x25519])
    client, server = {
        "plain": ({}, {}),
        "mutual": (mutual, dict(require_client_certificate=True)),
        "requested, none sent": ({}, dict(request_client_certificate=True)),
        "hello retry": (retry_client, retry_server),
        "hello retry, mutual": (
            {**retry_client, **mutual},
            {**retry_server, "require_client_certificate": True},
        ),
        "resumed": ({}, {}),
        "hello retry, resumed": (retry_client, retry_server),
        "resumed, early data": (
            dict(early_data=True),
            dict(max_early_data=1024, strike_register=StrikeRegister(20_000)),
        ),
    }[name]
    if "resumed" in name:
        # A first handshake fills the store; the scenario's handshake resumes.
        client["ticket_store"] = MemoryTicketStore()
        server["ticket_keys"] = TicketKeyRing([bytes(32)])
        EnginePair(client_config(pki, **client), server_config(pki, **server)).run()
    return client_config(pki, **client), server_config(pki, **server)


SCENARIOS = (
    "plain",
    "mutual",
    "requested, none sent",
    "hello retry",
    "hello retry, mutual",
    "resumed",
    "hello retry, resumed",
    "resumed, early data",
)


def _play(name: str, stop: Callable[[EnginePair], bool] | None = None) -> EnginePair:
    """One scenario: the handshake, a KeyUpdate each way, a ticket to the client;
    stops (returning the pair) as soon as ``stop(pair)`` holds."""
    pair = EnginePair(*_configs(name))

    def steps() -> bool:
        for _ in range(100):
            if stop is not None and stop(pair):
                return True
            pending = [role for role in Role if pair.inbox[role]]
            if not pending:
                return False
            pair.deliver(pending[0])
        raise AssertionError("scenario did not settle")

    if steps():
        return pair
    for sender in (pair.client, pair.server):
        sender.send_key_update(request_update=False)
        pair.collect()
        if steps():
            return pair
    pair.inbox[Role.CLIENT].append(TICKET)
    if steps():
        return pair
    assert stop is None, "scenario ended before the stop condition"
    return pair


@cache
def _traces() -> dict[str, tuple[Step, ...]]:
    return {name: tuple(_play(name).trace) for name in SCENARIOS}


def _table_steps() -> set[Step]:
    return {
        Step(role, state, msg_type, after)
        for role, table in TRANSITIONS.items()
        for (state, msg_type), transition in table.items()
        for after in transition.next.values()
    }


def test_real_handshakes_take_every_transition_of_the_table_and_no_other() -> None:
    observed = {step for trace in _traces().values() for step in trace}
    assert observed == _table_steps()


def test_every_message_in_the_table_has_a_handler() -> None:
    for role, table in TRANSITIONS.items():
        for _, msg_type in table:
            assert msg_type in CLASSES[role].HANDLERS, (role, msg_type)


def test_a_client_starts_by_sending_its_hello_and_a_server_by_waiting() -> None:
    pair = EnginePair(*_configs("plain"))
    assert pair.client.state is HandshakeState.WAIT_SH
    assert pair.server.state is HandshakeState.START
    assert [m.msg_type for m in pair.inbox[Role.SERVER]] == [HandshakeType.client_hello]


# -- the sweep ---------------------------------------------------------------------------
def _states_entered(role: Role) -> set[HandshakeState]:
    entered = {HandshakeState.START}
    for (state, _), transition in TRANSITIONS[role].items():
        entered.add(state)
        entered.update(transition.next.values())
    return entered


def _engine_in(role: Role, state: HandshakeState) -> TLSHandshake:
    """An engine of ``role`` in ``state``: reached by a real handshake when the
    role ever enters it, else forced on a fresh engine (the table must refuse
    everything in a state the role never has)."""
    if role is Role.CLIENT and state is HandshakeState.START:
        return ClientHandshake(_configs("plain")[0])  # not started: nothing is expected yet
    if state is STARTED[role]:
        return EnginePair(*_configs("plain")).engine(role)  # started, nothing delivered
    for name in SCENARIOS:
        if any(step.role is role and step.after is state for step in _traces()[name]):
            pair = _play(name, lambda p: p.engine(role).state is state)
            return pair.engine(role)
    assert state not in _states_entered(role)
    engine = EnginePair(*_configs("plain")).engine(role)
    engine.state = state
    return engine


def _pair_before(role: Role, state: HandshakeState, msg_type: int) -> EnginePair:
    """A pair whose ``role`` engine is in ``state`` with a real ``msg_type`` next."""
    for name in SCENARIOS:
        if any((s.role, s.before, s.msg_type) == (role, state, msg_type) for s in _traces()[name]):

            def ready(p: EnginePair) -> bool:
                message = p.next_message(role)
                return (
                    p.engine(role).state is state
                    and message is not None
                    and message.msg_type == msg_type
                )

            return _play(name, ready)
    raise AssertionError(f"no scenario delivers {msg_type} to the {role.value} in {state}")


message_types = st.one_of(st.sampled_from(list(HandshakeType)), st.integers(0, 255))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_sweep_every_state_and_message_type(data: st.DataObject) -> None:
    """Half the draws are pairs from the table (so progress is tried often), half
    any (state, message type); the epoch is the table's or any."""
    role = data.draw(st.sampled_from(list(Role)), label="role")
    table = TRANSITIONS[role]
    state, msg_type = data.draw(
        st.one_of(
            st.sampled_from(sorted(table, key=repr)),
            st.tuples(st.sampled_from(list(HandshakeState)), message_types),
        ),
        label="(state, message type)",
    )
    transition = table.get((state, msg_type))
    epochs = st.sampled_from(list(Epoch))
    if transition is not None:
        epochs = st.one_of(st.just(transition.epoch), epochs)
    epoch = data.draw(epochs, label="epoch")
    if transition is not None and epoch == transition.epoch:
        pair = _pair_before(role, state, msg_type)
        pair.deliver(role)
        assert pair.engine(role).state in transition.next.values()
        return
    engine = _engine_in(role, state)
    body = data.draw(st.binary(max_size=40), label="body")
    with pytest.raises(TLSError) as info:
        engine.receive(epoch, frame_message(msg_type, body))
    assert info.value.alert == AlertDescription.unexpected_message, info.value
    expected = "arrived at epoch" if transition is not None else f"in state {state.value}"
    assert expected in info.value.reason
    assert engine.state is state  # refused before anything changed


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("state", list(HandshakeState))
def test_each_state_refuses_every_message_type_it_has_no_entry_for(
    role: Role, state: HandshakeState
) -> None:
    """The exhaustive companion of the sweep over the known message types."""
    for msg_type in HandshakeType:
        if (state, msg_type) in TRANSITIONS[role]:
            continue
        engine = _engine_in(role, state)
        with pytest.raises(TLSError) as info:
            engine.receive(Epoch.INITIAL, frame_message(msg_type, b""))
        assert info.value.alert == AlertDescription.unexpected_message
        assert f"{role.value} received {msg_type.name} in state {state.value}" in (
            info.value.reason
        )


def test_a_second_hello_retry_request_is_unexpected_message() -> None:
    """RFC 8446 §4.1.4: the table has no HelloRetryRequest branch from WAIT_SH2."""
    pair = _play("hello retry", lambda p: p.client.state is HandshakeState.WAIT_SH2)
    first_retry = next(step for step in pair.trace if step.after is HandshakeState.WAIT_SH2)
    assert first_retry.msg_type == HandshakeType.server_hello
    retry = _retry_request_of("hello retry")
    with pytest.raises(TLSError) as info:
        pair.client.receive(Epoch.INITIAL, retry.raw)
    assert info.value.alert == AlertDescription.unexpected_message
    assert "a second HelloRetryRequest in state wait_sh2" in info.value.reason
    assert pair.client.pull_output() == []  # no third ClientHello went out


def _retry_request_of(name: str) -> Message:
    pair = EnginePair(*_configs(name))
    pair.deliver(Role.SERVER)
    message = pair.next_message(Role.CLIENT)
    assert message is not None and message.msg_type == HandshakeType.server_hello
    return message


@pytest.mark.parametrize("role", list(Role))
def test_quic_refuses_the_key_update_the_table_accepts_over_tcp(role: Role) -> None:
    """RFC 9001 §6: QUIC has its own key update; a TLS KeyUpdate is unexpected_message."""
    pair = EnginePair(*_configs("plain"), transport_parameters=(b"\x01\x00", b"\x01\x00"))
    pair.run()
    engine = pair.engine(role)
    assert engine.state is HandshakeState.CONNECTED
    with pytest.raises(TLSError) as info:
        engine.receive(Epoch.ONE_RTT, frame_message(HandshakeType.key_update, b"\x00"))
    assert info.value.alert == AlertDescription.unexpected_message
    assert info.value.reason == "TLS KeyUpdate received in QUIC"
