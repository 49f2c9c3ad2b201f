"""``python -m dyrygent.web -A proj [options]``: see :mod:`dyrygent.web.cli`."""

from __future__ import annotations

import sys

from dyrygent.web.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
