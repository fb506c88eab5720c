"""Our TLS 1.3 engine (RFC 8446), sans-I/O, shared by QUIC and the TCP record layer."""
