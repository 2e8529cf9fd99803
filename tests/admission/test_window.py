"""The join window: construction, edges of the closed interval, and the errors it raises."""

import dataclasses

import pytest

from admission.errors import RoomClosed, RoomNotOpenYet, WindowError
from admission.window import (
    DEFAULT_CLOSES_AFTER,
    DEFAULT_OPENS_BEFORE,
    JoinWindow,
    WindowState,
)

STARTS = 1_800_000_000.0  # 2027-01-15T08:00:00Z
ENDS = STARTS + 1800.0
NAN = float("nan")
INF = float("inf")


def test_defaults() -> None:
    assert DEFAULT_OPENS_BEFORE == 600.0
    assert DEFAULT_CLOSES_AFTER == 3600.0


def test_around_uses_the_default_margins() -> None:
    window = JoinWindow.around(STARTS, ENDS)
    assert window == JoinWindow(STARTS - 600.0, ENDS + 3600.0)


def test_around_with_custom_and_zero_margins() -> None:
    assert JoinWindow.around(STARTS, ENDS, opens_before=60, closes_after=0) == JoinWindow(
        STARTS - 60, ENDS
    )
    assert JoinWindow.around(STARTS, STARTS, opens_before=0, closes_after=0) == JoinWindow(
        STARTS, STARTS
    )


@pytest.mark.parametrize(
    ("opens_at", "closes_at", "match"),
    [
        (STARTS, STARTS - 1, "join window closes before it opens"),
        (NAN, STARTS, "opens_at must be finite"),
        (-INF, STARTS, "opens_at must be finite"),
        (STARTS, INF, "closes_at must be finite"),
    ],
)
def test_window_rejects_invalid_bounds(opens_at: float, closes_at: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JoinWindow(opens_at, closes_at)


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "margins", "match"),
    [
        (STARTS, STARTS - 1, {}, "appointment ends before it starts"),
        (NAN, ENDS, {}, "starts_at must be finite"),
        (STARTS, INF, {}, "ends_at must be finite"),
        (STARTS, ENDS, {"opens_before": -1.0}, "opens_before must be a finite number >= 0"),
        (STARTS, ENDS, {"opens_before": INF}, "opens_before must be a finite number >= 0"),
        (STARTS, ENDS, {"closes_after": -0.5}, "closes_after must be a finite number >= 0"),
        (STARTS, ENDS, {"closes_after": NAN}, "closes_after must be a finite number >= 0"),
    ],
)
def test_around_rejects_invalid_input(
    starts_at: float, ends_at: float, margins: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        JoinWindow.around(starts_at, ends_at, **margins)


WINDOW = JoinWindow.around(STARTS, ENDS)  # [STARTS - 600, ENDS + 3600]


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (STARTS - 86_400, WindowState.NOT_YET_OPEN),
        (STARTS - 600.001, WindowState.NOT_YET_OPEN),
        (STARTS - 600, WindowState.OPEN),  # opens_at is inside
        (STARTS, WindowState.OPEN),
        (ENDS + 3600, WindowState.OPEN),  # closes_at is inside
        (ENDS + 3600.001, WindowState.CLOSED),
        (ENDS + 86_400, WindowState.CLOSED),
    ],
)
def test_state_is_open_on_the_closed_interval(now: float, state: WindowState) -> None:
    assert WINDOW.state(now) is state


def test_a_zero_length_window_is_open_at_its_one_instant() -> None:
    window = JoinWindow(STARTS, STARTS)
    assert window.state(STARTS) is WindowState.OPEN
    assert window.state(STARTS - 0.001) is WindowState.NOT_YET_OPEN
    assert window.state(STARTS + 0.001) is WindowState.CLOSED


@pytest.mark.parametrize("now", [NAN, INF, -INF])
def test_state_rejects_a_non_finite_now(now: float) -> None:
    with pytest.raises(ValueError, match="now must be finite"):
        WINDOW.state(now)
    with pytest.raises(ValueError, match="now must be finite"):
        WINDOW.check(now)


@pytest.mark.parametrize("now", [STARTS - 600, STARTS, ENDS + 3600])
def test_check_passes_while_open(now: float) -> None:
    WINDOW.check(now)  # returns, raises nothing


def test_check_before_the_window() -> None:
    with pytest.raises(RoomNotOpenYet) as info:
        WINDOW.check(STARTS - 601)
    error = info.value
    assert isinstance(error, WindowError)
    assert error.code == "room_not_open"
    assert error.message == "room is not open yet: opens at 2027-01-15T07:50:00Z"
    assert error.details == {"opens_at": STARTS - 600, "closes_at": ENDS + 3600}


def test_check_after_the_window() -> None:
    with pytest.raises(RoomClosed) as info:
        WINDOW.check(ENDS + 3601)
    error = info.value
    assert isinstance(error, WindowError)
    assert error.code == "room_closed"
    assert error.message == "room is closed: closed at 2027-01-15T09:30:00Z"
    assert error.details == {"closed_at": ENDS + 3600}


def test_window_state_values() -> None:
    assert [state.value for state in WindowState] == ["not_yet_open", "open", "closed"]


def test_window_is_a_frozen_slotted_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        WINDOW.opens_at = 0.0  # type: ignore[misc]
    assert not hasattr(WINDOW, "__dict__")
    assert hash(WINDOW) == hash(JoinWindow.around(STARTS, ENDS))
