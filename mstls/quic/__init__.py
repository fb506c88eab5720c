"""QUIC v1 (RFC 9000, RFC 9001): packet protection, and later the transport core."""
