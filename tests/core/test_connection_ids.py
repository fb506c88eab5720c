"""Connection ID management (RFC 9000 §5.1, §19.15, §19.16)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.connection_ids import (
    MAX_ISSUED_CONNECTION_IDS,
    MAX_RETIRED_RANGES,
    LocalConnectionIds,
    PeerConnectionIds,
)
from mstls.core.sending import ListSink
from mstls.core.stateless_reset import StatelessResetKey
from mstls.exceptions import DecodeError, ProtocolError, TransportParameterError
from mstls.wire.buffer import Reader
from mstls.wire.frame_types import FrameType
from mstls.wire.frames import (
    Frame,
    NewConnectionIdFrame,
    RetireConnectionIdFrame,
    decode_frame,
)

KEY = StatelessResetKey(bytes(range(32)))
INITIAL = b"\x00" * 8
PV = TransportErrorCode.PROTOCOL_VIOLATION
LIMIT_ERROR = TransportErrorCode.CONNECTION_ID_LIMIT_ERROR


def counter() -> Callable[[int], bytes]:
    """A generator of distinct, predictable connection IDs: 1, 2, 3, ..."""
    values: Iterator[int] = iter(range(1, 1 << 30))
    return lambda length: next(values).to_bytes(length, "big")


def cid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def token(n: int) -> bytes:
    return n.to_bytes(16, "big")


def decoded(sink: ListSink) -> list[Frame]:
    return [decode_frame(Reader(frame)) for frame in sink.frames]


def sequences(sink: ListSink) -> list[int]:
    """Sequence numbers of the NEW_CONNECTION_ID frames in ``sink``."""
    frames = decoded(sink)
    assert all(isinstance(f, NewConnectionIdFrame) for f in frames)
    return [f.sequence_number for f in frames if isinstance(f, NewConnectionIdFrame)]


def new_cid_frames(sink: ListSink) -> list[NewConnectionIdFrame]:
    return [f for f in decoded(sink) if isinstance(f, NewConnectionIdFrame)]


def sent(ids: LocalConnectionIds | PeerConnectionIds, capacity: int = 1200) -> ListSink:
    sink = ListSink(capacity)
    ids.write_frames(sink)
    return sink


def local(limit: int | None = 4, **kwargs: object) -> LocalConnectionIds:
    ids = LocalConnectionIds(INITIAL, KEY, generator=counter(), **kwargs)  # type: ignore[arg-type]
    if limit is not None:
        ids.set_peer_limit(limit)
    return ids


def ncid(seq: int, rpt: int = 0, n: int | None = None) -> NewConnectionIdFrame:
    n = seq if n is None else n
    return NewConnectionIdFrame(seq, rpt, cid(100 + n), token(n))


def check_error(exc: pytest.ExceptionInfo[ProtocolError], code: int, frame_type: int) -> None:
    assert exc.value.error_code == code
    assert exc.value.frame_type == frame_type


# -- LocalConnectionIds: issuing ----------------------------------------------------


def test_initial_cid_is_sequence_zero_with_its_reset_token() -> None:
    ids = local(limit=None)
    assert ids.active_cids() == [INITIAL]
    assert ids.sequence_of(INITIAL) == 0
    assert ids.initial_reset_token == KEY.token_for(INITIAL)
    assert ids.pull_changes() == ([INITIAL], [])
    assert ids.pull_changes() == ([], [])
    assert not ids.has_pending_frames
    assert sent(ids).frames == []  # nothing before the peer's limit is known


def test_issues_up_to_the_peer_limit() -> None:
    ids = local(limit=4)
    assert ids.has_pending_frames
    frames = decoded(sent(ids))
    assert frames == [
        NewConnectionIdFrame(seq, 0, cid(seq), KEY.token_for(cid(seq))) for seq in (1, 2, 3)
    ]
    assert ids.active_cids() == [INITIAL, cid(1), cid(2), cid(3)]
    assert ids.pull_changes() == ([INITIAL, cid(1), cid(2), cid(3)], [])
    assert not ids.has_pending_frames
    assert sent(ids).frames == []


def test_issuing_is_capped_by_our_own_maximum() -> None:
    ids = local(limit=1000)
    assert len(ids.active_cids()) == MAX_ISSUED_CONNECTION_IDS
    assert len(sent(ids).frames) == MAX_ISSUED_CONNECTION_IDS - 1
    small = local(limit=1000, max_issued=3)
    assert len(small.active_cids()) == 3


def test_a_peer_limit_below_two_is_a_transport_parameter_error() -> None:
    ids = local(limit=None)
    with pytest.raises(TransportParameterError):
        ids.set_peer_limit(1)


def test_frames_that_do_not_fit_wait_for_the_next_packet() -> None:
    ids = local(limit=4)
    frame_size = 1 + 1 + 1 + 1 + 8 + 16
    sink = sent(ids, capacity=frame_size * 2 + 5)
    assert sequences(sink) == [1, 2]
    assert ids.has_pending_frames
    assert sequences(sent(ids)) == [3]


def test_lost_new_connection_id_frames_are_resent_and_acked_ones_are_not() -> None:
    ids = local(limit=4)
    first = sent(ids)
    first.lose()
    assert ids.has_pending_frames
    again = sent(ids)
    assert again.frames == first.frames
    again.acknowledge()
    assert not ids.has_pending_frames
    assert sent(ids).frames == []


def test_a_lost_frame_for_a_retired_cid_is_not_resent() -> None:
    ids = local(limit=4)
    sink = sent(ids)
    ids.on_retire_connection_id(RetireConnectionIdFrame(2), INITIAL)
    sink.lose()
    assert sequences(sent(ids)) == [4, 1, 3]


def test_a_late_ack_cancels_a_pending_resend() -> None:
    ids = local(limit=2)
    sink = sent(ids)
    (on_acked, on_lost, args) = sink.records[0]
    on_lost(*args)
    assert ids.has_pending_frames
    on_acked(*args)
    assert not ids.has_pending_frames
    # A loss reported for a copy after another copy was acknowledged changes nothing.
    on_lost(*args)
    assert not ids.has_pending_frames


# -- LocalConnectionIds: RETIRE_CONNECTION_ID ----------------------------------------


def test_retire_removes_the_cid_and_issues_a_replacement() -> None:
    ids = local(limit=4)
    sent(ids).acknowledge()
    ids.pull_changes()
    ids.on_retire_connection_id(RetireConnectionIdFrame(1), INITIAL)
    assert ids.pull_changes() == ([cid(4)], [cid(1)])
    assert ids.sequence_of(cid(1)) is None
    assert decoded(sent(ids)) == [NewConnectionIdFrame(4, 0, cid(4), KEY.token_for(cid(4)))]
    # Retiring sequence 0 is allowed from a packet sent to another CID.
    ids.on_retire_connection_id(RetireConnectionIdFrame(0), cid(2))
    assert INITIAL not in ids.active_cids()
    assert len(ids.active_cids()) == 4


def test_a_repeated_retire_is_ignored() -> None:
    ids = local(limit=4)
    ids.on_retire_connection_id(RetireConnectionIdFrame(1), INITIAL)
    ids.pull_changes()
    ids.on_retire_connection_id(RetireConnectionIdFrame(1), INITIAL)
    assert ids.pull_changes() == ([], [])
    assert len(ids.active_cids()) == 4


@pytest.mark.parametrize("sequence", [4, 5, 1 << 40])
def test_retiring_a_sequence_never_issued_is_a_protocol_violation(sequence: int) -> None:
    ids = local(limit=4)
    with pytest.raises(ProtocolError, match="never issued") as exc:
        ids.on_retire_connection_id(RetireConnectionIdFrame(sequence), INITIAL)
    check_error(exc, PV, FrameType.RETIRE_CONNECTION_ID)


@pytest.mark.parametrize("sequence", [0, 2])
def test_retiring_the_packets_own_cid_is_a_protocol_violation(sequence: int) -> None:
    ids = local(limit=4)
    dcid = INITIAL if sequence == 0 else cid(sequence)
    with pytest.raises(ProtocolError, match="own") as exc:
        ids.on_retire_connection_id(RetireConnectionIdFrame(sequence), memoryview(dcid))
    check_error(exc, PV, FrameType.RETIRE_CONNECTION_ID)
    assert dcid in ids.active_cids()


def test_zero_length_local_cid_issues_nothing_and_rejects_retire() -> None:
    ids = LocalConnectionIds(b"", KEY)
    ids.set_peer_limit(8)
    assert ids.active_cids() == []
    assert ids.pull_changes() == ([], [])
    assert ids.initial_reset_token is None
    assert sent(ids).frames == []
    assert not ids.retire_all_before(0)
    with pytest.raises(ProtocolError, match="zero-length") as exc:
        ids.on_retire_connection_id(RetireConnectionIdFrame(0), b"")
    check_error(exc, PV, FrameType.RETIRE_CONNECTION_ID)


# -- LocalConnectionIds: rotation with Retire Prior To ---------------------------------


def test_retire_all_before_issues_replacements_carrying_retire_prior_to() -> None:
    ids = local(limit=4)
    sent(ids).acknowledge()
    ids.pull_changes()
    assert ids.retire_all_before(4)
    assert ids.retire_prior_to == 4
    frames = new_cid_frames(sent(ids))
    assert [(f.sequence_number, f.retire_prior_to) for f in frames] == [
        (4, 4),
        (5, 4),
        (6, 4),
        (7, 4),
    ]
    added, removed = ids.pull_changes()
    assert added == [cid(4), cid(5), cid(6), cid(7)]
    assert removed == []  # old CIDs route until the peer retires them
    # A second rotation waits for the first to complete (§5.1.2).
    assert not ids.retire_all_before(6)
    for seq in range(4):
        ids.on_retire_connection_id(RetireConnectionIdFrame(seq), cid(4))
    assert ids.active_cids() == [cid(4), cid(5), cid(6), cid(7)]
    assert sent(ids).frames == []  # retiring requested CIDs needs no replacement
    assert ids.retire_all_before(6)
    assert sequences(sent(ids)) == [8, 9]


def test_retire_all_before_resends_a_frame_when_no_new_cid_is_needed() -> None:
    ids = local(limit=4)
    sent(ids).acknowledge()
    ids.on_retire_connection_id(RetireConnectionIdFrame(0), cid(1))
    sent(ids).acknowledge()  # replacement, sequence 4
    assert ids.retire_all_before(1)
    assert decoded(sent(ids)) == [NewConnectionIdFrame(4, 1, cid(4), KEY.token_for(cid(4)))]


def test_resent_frames_carry_the_latest_retire_prior_to_but_never_above_their_sequence() -> None:
    ids = local(limit=3)
    lost = sent(ids)  # sequences 1, 2
    assert ids.retire_all_before(2)
    lost.lose()
    frames = {f.sequence_number: f for f in new_cid_frames(sent(ids))}
    assert frames[1].retire_prior_to == 1
    assert frames[2].retire_prior_to == 2
    assert frames[3].retire_prior_to == 2


def test_retire_all_before_limits() -> None:
    assert not local(limit=None).retire_all_before(1)  # peer limit unknown
    ids = local(limit=2)
    assert not ids.retire_all_before(0)  # does not raise Retire Prior To
    with pytest.raises(ValueError):
        ids.retire_all_before(3)


# -- LocalConnectionIds: generator ----------------------------------------------------


def test_default_generator_makes_random_cids_of_the_configured_length() -> None:
    ids = LocalConnectionIds(b"\x01" * 12, KEY, cid_length=12)
    ids.set_peer_limit(8)
    cids = ids.active_cids()
    assert len(cids) == 8
    assert len(set(cids)) == 8
    assert all(len(c) == 12 for c in cids)


def test_generator_duplicates_are_retried() -> None:
    values = iter([INITIAL, INITIAL, cid(7), cid(7), cid(8)])
    ids = LocalConnectionIds(INITIAL, KEY, generator=lambda n: next(values))
    ids.set_peer_limit(3)
    assert ids.active_cids() == [INITIAL, cid(7), cid(8)]


def test_a_generator_stuck_on_one_value_is_an_internal_error() -> None:
    ids = LocalConnectionIds(INITIAL, KEY, generator=lambda n: INITIAL)
    with pytest.raises(ProtocolError) as exc:
        ids.set_peer_limit(2)
    assert exc.value.error_code == TransportErrorCode.INTERNAL_ERROR


def test_bad_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected 8"):
        LocalConnectionIds(b"\x01" * 4, KEY)
    with pytest.raises(ValueError, match="outside"):
        LocalConnectionIds(b"", KEY, cid_length=21)
    ids = LocalConnectionIds(INITIAL, KEY, generator=lambda n: b"\x01" * (n + 1))
    with pytest.raises(ValueError, match="generator"):
        ids.set_peer_limit(2)


# -- PeerConnectionIds: NEW_CONNECTION_ID ---------------------------------------------


def test_peer_starts_with_the_handshake_cid() -> None:
    ids = PeerConnectionIds(cid(100))
    assert ids.current == cid(100)
    assert ids.current_sequence == 0
    assert ids.reset_tokens() == []
    with_token = PeerConnectionIds(cid(100), token(0))
    assert with_token.reset_tokens() == [token(0)]


def test_new_cids_are_stored_but_their_tokens_wait_until_used() -> None:
    ids = PeerConnectionIds(cid(100), token(0))
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(2))
    assert ids.active_cids() == [cid(100), cid(101), cid(102)]
    assert ids.current == cid(100)
    assert ids.reset_tokens() == [token(0)]  # §10.3.1: not for unused CIDs
    assert not ids.has_pending_frames


def test_a_repeated_frame_is_accepted() -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(1))
    assert ids.active_cids() == [cid(100), cid(101)]


@pytest.mark.parametrize(
    "frame",
    [
        NewConnectionIdFrame(1, 0, cid(999), token(1)),  # same sequence, other CID
        NewConnectionIdFrame(1, 0, cid(101), token(9)),  # same sequence, other token
        NewConnectionIdFrame(2, 0, cid(101), token(2)),  # same CID, other sequence
        NewConnectionIdFrame(0, 0, cid(100), token(0)),  # sequence 0 had no token
    ],
)
def test_conflicting_repeats_are_protocol_violations(frame: NewConnectionIdFrame) -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(1))
    with pytest.raises(ProtocolError, match="repeats") as exc:
        ids.on_new_connection_id(frame)
    check_error(exc, PV, FrameType.NEW_CONNECTION_ID)


def test_exceeding_our_limit_is_a_connection_id_limit_error() -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    ids.on_new_connection_id(ncid(1))
    with pytest.raises(ProtocolError, match="exceed") as exc:
        ids.on_new_connection_id(ncid(2))
    check_error(exc, LIMIT_ERROR, FrameType.NEW_CONNECTION_ID)


def test_retire_prior_to_is_honoured_before_counting() -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(2, rpt=1))
    assert ids.active_cids() == [cid(101), cid(102)]


def test_retire_prior_to_switches_the_current_cid_and_queues_retire_frames() -> None:
    ids = PeerConnectionIds(cid(100), token(0))
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(2))
    ids.on_new_connection_id(ncid(3, rpt=2))
    assert ids.retire_prior_to == 2
    assert ids.current == cid(102)
    assert ids.current_sequence == 2
    assert ids.active_cids() == [cid(102), cid(103)]
    assert ids.reset_tokens() == [token(2)]  # the retired token is forgotten
    assert ids.has_pending_frames
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(0), RetireConnectionIdFrame(1)]


def test_lost_retire_frames_are_resent_and_acked_ones_are_not() -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(1, rpt=1))
    first = sent(ids)
    first.lose()
    again = sent(ids)
    assert again.frames == first.frames
    again.acknowledge()
    assert sent(ids).frames == []
    # A late ack of a copy declared lost cancels the resend.
    ids.on_new_connection_id(ncid(2, rpt=2))
    sink = sent(ids)
    on_acked, on_lost, args = sink.records[0]
    on_lost(*args)
    on_acked(*args)
    assert not ids.has_pending_frames


def test_retire_frames_that_do_not_fit_wait() -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(2, rpt=2))
    assert len(sent(ids, capacity=3).frames) == 1
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(1)]


def test_a_late_frame_below_retire_prior_to_is_retired_at_once_and_only_once() -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(3, rpt=3))
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(0)]
    ids.on_new_connection_id(ncid(1))
    assert ids.active_cids() == [cid(103)]
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(1)]
    ids.on_new_connection_id(ncid(1))
    assert sent(ids).frames == []


def test_a_resent_frame_never_brings_back_a_retired_cid() -> None:
    ids = PeerConnectionIds(cid(100))
    ids.on_new_connection_id(ncid(1))
    ids.on_new_connection_id(ncid(2))
    assert ids.switch_to_next() == cid(101)
    assert ids.switch_to_next() == cid(102)
    ids.on_new_connection_id(ncid(1))
    assert ids.active_cids() == [cid(102)]
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(0), RetireConnectionIdFrame(1)]


def test_zero_length_peer_cid_rejects_new_connection_id() -> None:
    ids = PeerConnectionIds(b"")
    with pytest.raises(ProtocolError, match="zero-length") as exc:
        ids.on_new_connection_id(ncid(1))
    check_error(exc, PV, FrameType.NEW_CONNECTION_ID)


def test_retire_prior_to_above_sequence_is_a_frame_encoding_error() -> None:
    ids = PeerConnectionIds(cid(100))
    with pytest.raises(DecodeError):
        ids.on_new_connection_id(NewConnectionIdFrame(1, 2, cid(101), token(1)))


def test_outstanding_retirements_are_bounded() -> None:
    """§5.1.2: a peer that keeps retiring while our RETIREs go unacknowledged is stopped."""
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    with pytest.raises(ProtocolError, match="waiting to be retired") as exc:
        for seq in range(1, 100):
            ids.on_new_connection_id(ncid(seq, rpt=seq))
            sent(ids)  # sent, never acknowledged
    check_error(exc, LIMIT_ERROR, FrameType.NEW_CONNECTION_ID)
    assert seq == 5  # limit 2 -> four outstanding retirements tolerated


def test_acknowledged_retirements_free_the_budget() -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    for seq in range(1, 200):
        ids.on_new_connection_id(ncid(seq, rpt=seq))
        sent(ids).acknowledge()
    assert ids.active_cids() == [cid(299)]


def test_gapped_sequences_keep_bounded_retired_state() -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    for seq in range(2, 400, 2):
        ids.on_new_connection_id(ncid(seq, rpt=seq))
        sent(ids).acknowledge()
    assert len(ids._retired) <= MAX_RETIRED_RANGES


# -- PeerConnectionIds: switching, handshake, preferred address ------------------------


def test_switch_to_next_uses_an_unused_cid_and_retires_the_old_one() -> None:
    ids = PeerConnectionIds(cid(100), token(0))
    assert ids.switch_to_next() is None
    ids.on_new_connection_id(ncid(1))
    assert ids.switch_to_next() == cid(101)
    assert ids.current == cid(101)
    assert ids.reset_tokens() == [token(1)]
    assert decoded(sent(ids)) == [RetireConnectionIdFrame(0)]
    assert ids.switch_to_next() is None


def test_replace_initial_and_reset_token_during_the_handshake() -> None:
    ids = PeerConnectionIds(b"\x55" * 8)
    ids.replace_initial(cid(100))
    assert ids.current == cid(100)
    ids.set_initial_reset_token(token(0))
    assert ids.reset_tokens() == [token(0)]
    with pytest.raises(ValueError):
        ids.set_initial_reset_token(b"short")
    ids.on_new_connection_id(ncid(1))
    with pytest.raises(ValueError):
        ids.replace_initial(cid(5))


def test_preferred_address_cid_is_sequence_one() -> None:
    ids = PeerConnectionIds(cid(100), token(0))
    ids.add_preferred_address(cid(101), token(1))
    assert ids.active_cids() == [cid(100), cid(101)]
    ids.on_new_connection_id(ncid(1))  # the same CID again in a frame is fine
    assert ids.switch_to_next() == cid(101)
    with pytest.raises(TransportParameterError):
        PeerConnectionIds(b"").add_preferred_address(cid(101), token(1))
    with pytest.raises(TransportParameterError):
        ids.add_preferred_address(cid(105), token(5))


# -- both sides together ------------------------------------------------------------


def test_issuing_and_retiring_end_to_end() -> None:
    """Our issuer feeding a peer store that keeps migrating to fresh CIDs."""
    issuer = LocalConnectionIds(INITIAL, KEY, generator=counter())
    store = PeerConnectionIds(INITIAL, active_connection_id_limit=4)
    issuer.set_peer_limit(4)
    for _ in range(50):
        issued = sent(issuer)
        for frame in new_cid_frames(issued):
            store.on_new_connection_id(frame)
        issued.acknowledge()
        old = store.current
        assert store.switch_to_next() is not None
        retired = sent(store)
        for retire in decoded(retired):
            assert isinstance(retire, RetireConnectionIdFrame)
            issuer.on_retire_connection_id(retire, store.current)
        retired.acknowledge()
        assert old not in issuer.active_cids()
        assert set(store.active_cids()) <= set(issuer.active_cids())
        assert store.reset_tokens() == [KEY.token_for(store.current)]
    newest = issuer.sequence_of(store.active_cids()[-1])
    assert newest is not None
    assert issuer.retire_all_before(newest)
    for frame in new_cid_frames(sent(issuer)):
        store.on_new_connection_id(frame)
    assert store.current_sequence >= newest
    for retire in decoded(sent(store)):
        assert isinstance(retire, RetireConnectionIdFrame)
        issuer.on_retire_connection_id(retire, store.current)
    assert set(store.active_cids()) == set(issuer.active_cids())


frames_strategy = st.lists(
    st.tuples(
        st.integers(0, 12),  # sequence
        st.integers(0, 12),  # retire prior to (clamped)
        st.integers(0, 4),  # which CID
        st.integers(0, 2),  # which token
        st.sampled_from(["none", "ack", "lose"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(frames_strategy, st.integers(2, 5))
def test_arbitrary_new_connection_id_frames_give_progress_or_a_clean_error(
    frames: list[tuple[int, int, int, int, str]], limit: int
) -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=limit)
    for seq, rpt, which_cid, which_token, then in frames:
        frame = NewConnectionIdFrame(seq, min(rpt, seq), cid(which_cid), token(which_token))
        try:
            ids.on_new_connection_id(frame)
        except ProtocolError as exc:
            assert exc.error_code in (PV, LIMIT_ERROR)
            return
        active = ids.active_cids()
        assert ids.current in active
        assert len(active) <= limit
        assert len(set(active)) == len(active)
        assert ids.current_sequence >= ids.retire_prior_to
        sink = sent(ids)
        if then == "ack":
            sink.acknowledge()
        elif then == "lose":
            sink.lose()


def test_switching_stops_when_retirements_go_unacknowledged() -> None:
    ids = PeerConnectionIds(cid(100), active_connection_id_limit=2)
    for seq in range(1, 5):
        ids.on_new_connection_id(ncid(seq))
        assert ids.switch_to_next() == cid(100 + seq)
        sent(ids)  # never acknowledged
    ids.on_new_connection_id(ncid(5))
    assert ids.switch_to_next() is None  # four outstanding: the budget is spent
    assert ids.current == cid(104)
