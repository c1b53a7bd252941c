"""Stepping back and forth through a recorded session's states: :class:`Timeline`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

__all__ = ["Timeline"]

T = TypeVar("T")


class Timeline(Generic[T]):
    """A cursor over the steps of a session (a store's states, in the order published).

    It starts at step 0; :meth:`next` and :meth:`prev` move one step, :meth:`at` to any.
    Each move calls ``on_move`` with the step reached (a replay restores its stores there).

    Args:
        steps: The steps, in order (at least one).
        on_move: Called with each step moved to.

    Raises:
        ValueError: No steps.

    Example:
        >>> t = Timeline(["s0", "s1", "s2"])
        >>> t.current, t.next(), t.next(), t.prev(), t.at(0), t.index
        ('s0', 's1', 's2', 's1', 's0', 0)
    """

    def __init__(self, steps: Sequence[T], on_move: Callable[[T], None] | None = None) -> None:
        if not steps:
            raise ValueError("a timeline needs at least one step")
        self._steps = tuple(steps)
        self._on_move = on_move
        self._index = 0

    @property
    def index(self) -> int:
        """The step the timeline is at."""
        return self._index

    @property
    def current(self) -> T:
        """The step the timeline is at."""
        return self._steps[self._index]

    @property
    def steps(self) -> tuple[T, ...]:
        """Every step, in order."""
        return self._steps

    def at(self, index: int) -> T:
        """Move to step ``index`` (negative counts from the end) and return it.

        Raises:
            IndexError: No such step; names how many there are.
        """
        count = len(self._steps)
        if not -count <= index < count:
            raise IndexError(f"no step {index}: the timeline has steps 0 to {count - 1}")
        self._index = index % count
        step = self._steps[self._index]
        if self._on_move is not None:
            self._on_move(step)
        return step

    def next(self) -> T:
        """Move one step forward and return it.

        Raises:
            IndexError: At the last step.
        """
        if self._index + 1 >= len(self._steps):
            raise IndexError(f"at the last step ({self._index})")
        return self.at(self._index + 1)

    def prev(self) -> T:
        """Move one step back and return it.

        Raises:
            IndexError: At the first step.
        """
        if self._index == 0:
            raise IndexError("at the first step (0)")
        return self.at(self._index - 1)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[T]:
        return iter(self._steps)
