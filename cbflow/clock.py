"""Time, injectable: production reads the system clock, tests and the demo set their own."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stands still until moved; the demo walks it through a round's timetable."""

    now: datetime

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("FixedClock needs a time-zone-aware datetime")

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedClock needs a time-zone-aware datetime")
        self.now = when

    def advance(self, delta: timedelta) -> None:
        self.now = self.now + delta
