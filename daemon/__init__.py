"""mstlsd, the long-running daemon (built on the public mstls API)."""
