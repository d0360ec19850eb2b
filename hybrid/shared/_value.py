"""A small typed value (int, float or bool) shared by all processes, updated atomically."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from . import _mapped, _segment
from ._closing import ClosesOnExit

V = TypeVar("V", int, float, bool)

_FORMATS: dict[type, str] = {int: "=q", float: "=d", bool: "=?"}


class SharedValue(ClosesOnExit, Generic[V]):
    """An ``int`` (64-bit), ``float`` or ``bool`` that every process reads and updates atomically.

    Every operation holds a lock that spans processes (``fcntl.flock``, dropped by the
    kernel if a holder dies) and threads. Picklable: pass it to tasks as an argument or
    through the engine's ``initargs``. The creating process owns the backing file:
    :meth:`close` removes it.

    Args:
        initial: the starting value; its type fixes the value's type.

    Example:
        >>> with SharedValue(10) as budget:
        ...     budget.add(-3)
        ...     budget.compare_and_set(7, 0)
        7
        True
    """

    def __init__(self, initial: V) -> None:
        kind = type(initial)
        if kind not in _FORMATS:
            raise TypeError(f"SharedValue holds int, float or bool, not {kind.__qualname__}")
        self.name = _segment.new_name(None, "value", kind.__name__)
        self._format = struct.Struct(_FORMATS[kind])
        _mapped.create(self.name, self._format.pack(initial).ljust(8, b"\0"))
        self._owner_pid = os.getpid()

    @classmethod
    def attach(cls, name: str, kind_name: str) -> SharedValue[Any]:
        """Use the existing value ``name`` (what unpickling does)."""
        kinds = {kind.__name__: kind for kind in _FORMATS}
        value: SharedValue[Any] = cls.__new__(cls)
        value.name = name
        value._format = struct.Struct(_FORMATS[kinds[kind_name]])
        value._owner_pid = -1
        _mapped.attach(name)  # fail now if it does not exist
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return SharedValue.attach, (self.name, self.name.split("-")[4])

    def __repr__(self) -> str:
        return f"<SharedValue {self.name} {self.get()!r}>"

    def get(self) -> V:
        with self._locked() as mm:
            value: V = self._format.unpack_from(mm, 0)[0]
        return value

    def set(self, value: V) -> None:
        with self._locked() as mm:
            self._format.pack_into(mm, 0, value)

    def add(self, amount: V) -> V:
        """Add ``amount`` and return the new value."""

        def plus(value: V) -> V:
            total: Any = value + amount  # bool + bool is an int: stored back as a bool
            return cast(V, total)

        return self.update(plus)

    def compare_and_set(self, expected: V, new: V) -> bool:
        """Set ``new`` only if the value equals ``expected``; True if it did."""
        with self._locked() as mm:
            if self._format.unpack_from(mm, 0)[0] != expected:
                return False
            self._format.pack_into(mm, 0, new)
            return True

    def update(self, change: Callable[[V], V]) -> V:
        """Replace the value with ``change(value)`` atomically; return the new value.

        ``change`` runs under the lock: keep it short and never touch this value in it.
        """
        with self._locked() as mm:
            new = change(self._format.unpack_from(mm, 0)[0])
            self._format.pack_into(mm, 0, new)
        return new

    def close(self) -> None:
        """Remove the backing file if this process created it."""
        if self._owner_pid == os.getpid():
            self._owner_pid = -1
            _segment.unlink(self.name)
            _mapped.forget(self.name)

    def _locked(self) -> Any:
        # Looked up each time: after a fork the child needs a descriptor of its own.
        return _mapped.attach(self.name).locked()
