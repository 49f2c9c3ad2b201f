"""``python -m dyrygent demo`` (dyrygent/demo.py) and ``python -m dyrygent COMMAND -A proj``,
the commands of ``celery -A proj dyrygent COMMAND`` (dyrygent/cli)."""

from __future__ import annotations

import sys

USAGE = """\
usage: python -m dyrygent demo [--broker URL --backend URL]
       python -m dyrygent COMMAND [ARGS] -A PROJ   (ls, show, history, graph, cancel, retry;
                                                   the same as `celery -A PROJ dyrygent ...`)
       python -m dyrygent --help"""


def main(argv: list[str]) -> int:
    """Run the demo or a command; returns the exit code (2 and the usage when none is given)."""
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "demo":
        from dyrygent.demo import main as demo

        return demo(argv[1:])
    from dyrygent.cli import dyrygent

    try:
        dyrygent.main(args=argv, prog_name="python -m dyrygent", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
