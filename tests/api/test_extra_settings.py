"""``extra`` settings reach both transports: a raised stream limit works over TCP too.

Before, ``ClientConfig.qmux_config`` and ``ServerConfig.qmux_config`` dropped ``extra``,
so a QMux connection kept the default 128 streams and 4,096 tracked streams whatever
the configuration said (issue 11: "100,000 concurrently open idle streams on one
connection work with a raised limit").
"""

from __future__ import annotations

from typing import Any

import pytest

import mstls

from .helpers import TIMEOUT, client_config, server, server_config

RAISED = {"max_streams_bidi": 600, "max_tracked_streams": 2048}


@pytest.mark.parametrize("make", [client_config, server_config])
def test_shared_names_apply_to_both_transports(make: Any) -> None:
    config = make(extra=RAISED)
    quic = config.quic_config("localhost") if make is client_config else config.quic_config()
    qmux = config.qmux_config("localhost") if make is client_config else config.qmux_config()
    for transport in (quic, qmux):
        assert transport.max_streams_bidi == 600
        assert transport.max_tracked_streams == 2048


def test_a_transport_only_name_applies_where_it_exists() -> None:
    config = client_config(extra={"max_record_size": 1 << 16, "cid_length": 12})
    assert config.qmux_config("localhost").max_record_size == 1 << 16
    assert config.quic_config("localhost").cid_length == 12


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"no_such_setting": 1}, "not a QUIC or QMux setting: no_such_setting"),
        ({"idle_timeout": 5.0}, "own field"),
        ({"max_tracked_streams": 100}, "max_streams_bidi"),  # below the stream limits
    ],
)
def test_a_bad_name_or_value_fails_for_tcp_as_for_udp(extra: dict[str, Any], words: str) -> None:
    config = client_config(extra=extra)
    for build in (config.quic_config, config.qmux_config):
        with pytest.raises(mstls.ConfigurationError, match=words):
            build("localhost")


def test_a_setting_given_by_a_field_and_by_extra_is_refused() -> None:
    config = client_config(datagrams=True, extra={"max_datagram_frame_size": 1200})
    with pytest.raises(mstls.ConfigurationError, match="already set"):
        config.qmux_config("localhost")


def test_a_raised_stream_limit_works_over_tcp() -> None:
    """600 streams open at once on one QMux connection: more than the default 128."""
    with server(transport="tcp", extra=RAISED) as (listener, _):
        port = listener.address[1]
        conn = mstls.connect(
            "127.0.0.1", port, client_config(extra=RAISED), transport="tcp", timeout=TIMEOUT
        )
        try:
            streams = [conn.open_stream(timeout=TIMEOUT) for _ in range(600)]
            for stream in streams:
                stream.write(b"x", timeout=TIMEOUT)
            assert streams[-1].read(1, timeout=TIMEOUT) == b"x"
            assert streams[0].read(1, timeout=TIMEOUT) == b"x"
        finally:
            conn.close()
