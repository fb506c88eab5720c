"""QMux: QUIC v1 streams over TLS 1.3 over TCP (draft-ietf-quic-qmux-02).

:mod:`.connection` holds the sans-I/O :class:`~mstls.qmux.connection.QMuxConnection`
(the counterpart of :class:`~mstls.quic.connection.QuicConnection`, with the same
driver-facing surface and the same stream layer), :mod:`.config` its
:class:`~mstls.qmux.config.QMuxConfig`, :mod:`.records` the outgoing record
builder and :mod:`.ping` the QX_PING sequence rules.
"""
