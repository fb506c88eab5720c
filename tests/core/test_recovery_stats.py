"""Loss recovery's statistics counters (RFC 9002 §6.1 losses, §6.2 probe timeouts)."""

from __future__ import annotations

from .test_recovery import APP, Log, ack, make, send


def test_counters_start_at_zero() -> None:
    r = make()
    assert (r.packets_lost, r.bytes_lost, r.retransmissions, r.probe_timeouts) == (0, 0, 0, 0)


def test_packet_threshold_losses_are_counted() -> None:
    r = make()
    log = Log()
    for pn in range(6):
        send(r, pn, 1.0, log=log, size=1000 + pn)
    # 0 and 1 are three or more below the largest acknowledged (§6.1.1).
    result = r.on_ack_received(APP, ack((2, 5)), 3, 1.05)
    assert [p.packet_number for p in result.lost] == [0, 1]
    assert r.packets_lost == 2
    assert r.bytes_lost == 1000 + 1001
    assert r.retransmissions == 2  # both had frames, handed back with on_lost
    assert len(log.lost) == 2


def test_lost_packet_without_frames_is_no_retransmission() -> None:
    r = make()
    send(r, 0, 1.0)  # ack-eliciting but no records (a PING)
    send(r, 1, 1.0, ack_eliciting=False, in_flight=False, size=50)  # ACK only
    for pn in range(2, 6):
        send(r, pn, 1.0, log=Log())
    r.on_ack_received(APP, ack((4, 4)), 3, 1.05)  # 0 and 1 lost (§6.1.1), 2 and 3 not yet
    assert r.packets_lost == 2
    assert r.bytes_lost == 1200 + 50
    assert r.retransmissions == 0


def test_mtu_probe_loss_is_not_counted() -> None:
    r = make()
    log = Log()
    send(r, 0, 1.0, log=log, size=1400, is_mtu_probe=True)
    for pn in range(1, 5):
        send(r, pn, 1.0, log=log)
    result = r.on_ack_received(APP, ack((1, 4)), 3, 1.05)
    assert [p.packet_number for p in result.lost] == [0]
    assert (r.packets_lost, r.bytes_lost, r.retransmissions) == (0, 0, 0)


def test_time_threshold_losses_are_counted() -> None:
    r = make()
    log = Log()
    send(r, 0, 1.0, log=log)
    send(r, 1, 1.0, log=log)
    r.on_ack_received(APP, ack((1, 1)), 3, 1.1)  # 0 is not yet lost: only one behind
    assert r.packets_lost == 0
    deadline = r.loss_detection_deadline()
    assert deadline is not None
    timeout = r.on_loss_detection_timeout(deadline)
    assert [p.packet_number for p in timeout.lost] == [0]
    assert (r.packets_lost, r.retransmissions) == (1, 1)
    assert r.probe_timeouts == 0  # a loss timer, not a probe timeout


def test_probe_timeouts_accumulate_while_pto_count_resets() -> None:
    r = make()
    send(r, 0, 1.0, log=Log())
    for expected in (1, 2, 3):
        deadline = r.loss_detection_deadline()
        assert deadline is not None
        result = r.on_loss_detection_timeout(deadline)
        assert result.probe_count
        assert (r.probe_timeouts, r.pto_count) == (expected, expected)
        send(r, expected, deadline, log=Log())
    r.on_ack_received(APP, ack((3, 3)), 3, r.loss_detection_deadline() or 0.0)
    assert r.pto_count == 0  # §6.2.1: reset by an acknowledgement
    assert r.probe_timeouts == 3  # the statistic is not
