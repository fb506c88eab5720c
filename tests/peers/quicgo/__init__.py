"""quic-go 0.29 as an interop peer: ``peer.go`` (our own program), its build and its runners.

See :mod:`tests.peers.quicgo.runner` for building and running it and
:mod:`tests.peers.quicgo.streams` for the mstls side of its stream protocol.
"""
