"""``python -m mstls``: the ``mstls`` command line, for when the console script is not on PATH.

The command line lives beside the daemon (:mod:`mstlsd.cli`), above the library
in the layer map; this module is the one place under ``mstls/`` allowed to
reach it, and only when run as a program -- ``import mstls`` never imports it,
so the library itself stays free of upward imports.
"""

import importlib
import sys
from collections.abc import Callable


def _run() -> int:
    """Import :func:`mstlsd.cli.main` by name at run time (upward, so never at import time)."""
    main: Callable[[], int] = importlib.import_module("mstlsd.cli").main
    return main()


if __name__ == "__main__":
    sys.exit(_run())
