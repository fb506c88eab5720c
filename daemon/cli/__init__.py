"""``mstls``, the command line client: beside the daemon, not inside the library.

It lives in :mod:`mstlsd.cli` because it is built on the daemon's conventions
(the stream preamble, the state directory and its development CA) as well as
on the public :mod:`mstls` API; the library never imports it (the layer rule of
the README: wire -> tls -> core -> transport -> drivers -> daemon/CLI).
``mstls`` (the console script), ``python -m mstlsd.cli`` and ``python -m mstls``
all run :func:`main`.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
