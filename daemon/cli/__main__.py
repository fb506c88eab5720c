"""``python -m mstlsd.cli``: the ``mstls`` command line."""

import sys

from .main import main

sys.exit(main())
