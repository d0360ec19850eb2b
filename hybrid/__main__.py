"""``hybrid`` on the command line: ``hybrid info`` here; other commands come from adapters.

Commands that need a third-party system (``hybrid worker`` over Redis, ``hybrid top``)
live in ``adapters`` and are found through the ``hybrid.commands`` entry points, so the
core never imports an adapter.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import multiprocessing
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._core.engine import default_start_method
from .machine import cgroup_cpu_quota, usable_cpus

ENTRY_POINT_GROUP = "hybrid.commands"
EXTRA_FOR_COMMAND = {"worker": "redis", "top": "monitor"}  # what to install when one is missing


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = _plugin_commands()
    if not args or args[0] in {"-h", "--help"}:
        _print_usage(commands)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "info":
        return _info(rest)
    if name == "--version":
        print(__version__)
        return 0
    if name not in commands:
        extra = EXTRA_FOR_COMMAND.get(name)
        hint = f" (install it with: pip install 'hybrid[{extra}]')" if extra else ""
        print(f"hybrid: unknown command {name!r}{hint}", file=sys.stderr)
        _print_usage(commands, file=sys.stderr)
        return 2
    return _run_plugin(name, commands[name], rest)


def _plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _run_plugin(name: str, point: importlib.metadata.EntryPoint, rest: list[str]) -> int:
    try:
        command: Callable[[list[str]], int] = point.load()
    except ImportError as exc:
        extra = EXTRA_FOR_COMMAND.get(name, "all")
        print(
            f"hybrid {name}: needs a package that is not installed ({exc.name or exc}); "
            f"install it with: pip install 'hybrid[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return int(command(rest))


def _info(rest: list[str]) -> int:
    argparse.ArgumentParser(prog="hybrid info", description="What hybrid sees here.").parse_args(
        rest
    )
    quota = cgroup_cpu_quota()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio (install hybrid[uvloop] for uvloop)"
    print(f"hybrid {__version__} on Python {sys.version.split()[0]}")
    print(
        f"usable CPUs: {usable_cpus()} (cgroup quota: {'none' if quota is None else f'{quota:g}'})"
    )
    print(
        f"start method: {default_start_method()} (available: "
        f"{', '.join(multiprocessing.get_all_start_methods())})"
    )
    print(f"event loop: {loop}")
    return 0


def _print_usage(commands: dict[str, importlib.metadata.EntryPoint], file: object = None) -> None:
    names = ["info", *sorted(commands)]
    print(f"usage: hybrid {{{','.join(names)}}} ...", file=file)  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
