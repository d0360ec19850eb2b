"""``python -m examples.crawler``: see ``--help``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    # Imported here: the workers are spawned and import this module, and need none of it.
    from .memory import tune_malloc

    tune_malloc()  # before any thread starts, and before the workers are spawned
    import hybrid

    from .cli import UsageError, parse_config

    arguments = sys.argv[1:] if argv is None else argv
    try:
        config = parse_config(arguments)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .app import run

    return hybrid.run(run(config, arguments))


if __name__ == "__main__":
    sys.exit(main())
