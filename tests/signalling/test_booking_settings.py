"""Self-booking's settings: defaults, the environment, and values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalling.settings import ConfigError, Settings
from tests.support import KEYS_ENV


def from_env(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**KEYS_ENV, **env}, data_dir=tmp_path)


def test_booking_defaults(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    assert settings.hold_seconds == 900.0  # 15 minutes (seed 001)
    assert settings.booking_notice == 3600.0
    assert settings.slot_minutes == 30
    assert settings.hold_sweep == 5.0


def test_booking_settings_from_the_environment(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        VESTIBULE_HOLD_SECONDS="120",
        VESTIBULE_BOOKING_NOTICE="0",
        VESTIBULE_SLOT_MINUTES="15",
        VESTIBULE_HOLD_SWEEP="0.5",
    )
    assert (settings.hold_seconds, settings.booking_notice) == (120.0, 0.0)
    assert (settings.slot_minutes, settings.hold_sweep) == (15, 0.5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VESTIBULE_HOLD_SECONDS": "0"}, "VESTIBULE_HOLD_SECONDS must be more than 0"),
        ({"VESTIBULE_HOLD_SWEEP": "0"}, "VESTIBULE_HOLD_SWEEP must be more than 0"),
        ({"VESTIBULE_SLOT_MINUTES": "4"}, "VESTIBULE_SLOT_MINUTES must be from 5 to 480"),
        ({"VESTIBULE_SLOT_MINUTES": "481"}, "from 5 to 480"),
        ({"VESTIBULE_BOOKING_NOTICE": "-1"}, "must not be negative"),
        ({"VESTIBULE_SLOT_MINUTES": "half"}, "whole number"),
    ],
)
def test_impossible_booking_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(tmp_path, **env)
