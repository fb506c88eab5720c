"""The sans-I/O connection core: streams, flow control, recovery, connection IDs, timers.

Nothing here sleeps, touches a socket or starts a thread; every entry point that
depends on time takes ``now`` (seconds, from the caller's monotonic clock).
"""
