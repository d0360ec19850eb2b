"""``hybrid`` on the command line: ``hybrid info`` here; other commands come from adapters.

Commands that need a third-party system (``hybrid worker`` over Redis, ``hybrid top``)
live in ``adapters`` and are found through the ``hybrid.commands`` entry points, so the
core never imports an adapter.

Exit status, the same for every command: 0 on success, 2 for a usage error (a bad option
or argument, said in one line on stderr), 1 for a failure at run time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import multiprocessing
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._core.engine import default_start_method
from ._plugins import DISTRIBUTION, foreign_adapters, plugin_commands
from .machine import cgroup_cpu_quota, usable_cpus

EXTRA_FOR_COMMAND = {"worker": "redis", "top": "monitor"}  # what to install when one is missing
# One line for each command in ``hybrid --help``, without loading its adapter.
ABOUT_COMMAND = {
    "info": "what hybrid sees here: CPUs, cgroup quota, start method, event loop, adapters",
    "top": "live view of a running engine's /metrics endpoint (extra: monitor)",
    "worker": "run a scale-out node: jobs from a Redis stream on local workers (extra: redis)",
}
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hybrid`` with these arguments (``sys.argv[1:]`` by default); the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = plugin_commands()
    try:
        if not args or args[0].startswith("-"):
            parser = build_parser(commands)
            if args and args[0] not in {"-h", "--help", "-V", "--version"}:
                parser.error(f"unknown option {args[0]!r}")
            parser.parse_args(args)  # -h, -V, or a usage error: all exit
            return EXIT_USAGE  # pragma: no cover - argparse exits above
        name, rest = args[0], args[1:]
        if name == "info":
            return _info(rest)
        if name not in commands:
            return _unknown(name, commands)
        return _run_plugin(name, commands[name], rest)
    except SystemExit as exc:  # argparse's -h, -V and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def build_parser(commands: dict[str, importlib.metadata.EntryPoint]) -> argparse.ArgumentParser:
    """The top-level parser: it only lists the commands, each of which parses its own options."""
    parser = argparse.ArgumentParser(
        prog="hybrid",
        description="hybrid: an asyncio event loop for I/O, worker processes for CPU-bound calls.",
        epilog="Run 'hybrid COMMAND --help' for a command's options. Exit status: 0 ok, "
        "1 failure at run time, 2 usage error.",
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"{DISTRIBUTION} {__version__}",
        help="print the distribution's name and version, then exit",
    )
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", required=True
    )
    for name in ["info", *sorted(commands)]:
        about = ABOUT_COMMAND[name] if name in ABOUT_COMMAND else f"from {_source(commands, name)}"
        subparsers.add_parser(name, help=about)
    return parser


def _source(commands: dict[str, importlib.metadata.EntryPoint], name: str) -> str:
    return commands[name].value.partition(":")[0]


def _unknown(name: str, commands: dict[str, importlib.metadata.EntryPoint]) -> int:
    extra = EXTRA_FOR_COMMAND.get(name)
    hint = f" (install it with: pip install '{DISTRIBUTION}[{extra}]')" if extra else ""
    build_parser(commands).print_usage(sys.stderr)
    print(f"hybrid: unknown command {name!r}{hint}", file=sys.stderr)
    return EXIT_USAGE


def _run_plugin(name: str, point: importlib.metadata.EntryPoint, rest: list[str]) -> int:
    try:
        command: Callable[[list[str]], int] = point.load()
    except Exception as exc:
        # The usual cause is a missing extra; but if ``adapters`` is another distribution's
        # package, any error may come out of its code: name that instead of a traceback.
        conflict = foreign_adapters()
        if conflict is not None:
            print(f"hybrid {name}: {conflict}", file=sys.stderr)
            return EXIT_RUNTIME
        if not isinstance(exc, ImportError):
            raise
        extra = EXTRA_FOR_COMMAND.get(name, "all")
        print(
            f"hybrid {name}: needs a package that is not installed ({exc.name or exc}); "
            f"install it with: pip install '{DISTRIBUTION}[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    return int(command(rest))


def _info(rest: list[str]) -> int:
    argparse.ArgumentParser(
        prog="hybrid info",
        description="Print what hybrid sees on this machine: usable CPUs, the cgroup CPU "
        "quota, the start method for worker processes, the event loop it would use, and "
        "whether the importable 'adapters' package is hybrid's.",
    ).parse_args(rest)
    quota = cgroup_cpu_quota()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = f"asyncio (install {DISTRIBUTION}[uvloop] for uvloop)"
    print(f"{DISTRIBUTION} {__version__} on Python {sys.version.split()[0]}")
    print(
        f"usable CPUs: {usable_cpus()} (cgroup quota: {'none' if quota is None else f'{quota:g}'})"
    )
    print(
        f"start method: {default_start_method()} (available: "
        f"{', '.join(multiprocessing.get_all_start_methods())})"
    )
    print(f"event loop: {loop}")
    conflict = foreign_adapters()
    print(f"adapters: {'ok' if conflict is None else conflict}")
    return 0 if conflict is None else EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
