"""The blocking, thread-safe driver: an assist thread plus thin views on sans-I/O connections."""
