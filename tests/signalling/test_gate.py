"""The count of unauthenticated sockets (signalling/gate.py) and its settings. Pure: the
real server's use of it is in test_uvicorn_server.py and tests/e2e/test_flood.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalling.gate import Gate
from signalling.settings import ConfigError, Limits, Settings
from tests.support import KEYS_ENV


def test_sockets_are_counted_per_node_and_per_address() -> None:
    gate = Gate(limit=3, per_address=2)
    assert gate.enter(("10.0.0.1", 1))
    assert gate.enter(("10.0.0.1", 2))
    assert not gate.enter(("10.0.0.1", 3))  # that address has its two
    assert gate.enter(("10.0.0.2", 1))
    assert not gate.enter(("10.0.0.3", 1))  # the node has its three
    assert (gate.count, gate.refused) == (3, 2)
    gate.leave(("10.0.0.1", 1))
    assert gate.enter(("10.0.0.1", 3))  # a place is free again, for that address too


def test_leaving_is_idempotent_and_unknown_sockets_do_not_count() -> None:
    gate = Gate(limit=1, per_address=1)
    assert gate.enter(("10.0.0.1", 1))
    assert gate.enter(("10.0.0.1", 1))  # the same socket again: still one
    gate.leave(("10.0.0.1", 1))
    gate.leave(("10.0.0.1", 1))
    gate.leave(("10.0.0.9", 9))  # never entered (a server without the gated protocol)
    assert gate.count == 0
    assert gate.enter(None)  # no peer (a unix socket): not counted
    assert gate.count == 0


def test_caps_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Gate(limit=0, per_address=1)


def test_the_limits_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        **KEYS_ENV,
        "VESTIBULE_HEADER_TIMEOUT": "2.5",
        "VESTIBULE_MAX_UNAUTHENTICATED": "100",
        "VESTIBULE_MAX_UNAUTHENTICATED_PER_ADDRESS": "10",
    }
    limits = Settings.from_env(env, data_dir=tmp_path).limits
    assert (
        limits.header_timeout,
        limits.max_unauthenticated,
        limits.max_unauthenticated_per_address,
    ) == (2.5, 100, 10)
    default = Settings.from_env(KEYS_ENV, data_dir=tmp_path).limits
    assert default == Limits()
    assert (default.header_timeout, default.max_unauthenticated) == (10.0, 4096)
    assert default.max_unauthenticated_per_address == 256


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VESTIBULE_HEADER_TIMEOUT", "0"),
        ("VESTIBULE_MAX_UNAUTHENTICATED", "0"),
        ("VESTIBULE_MAX_UNAUTHENTICATED_PER_ADDRESS", "0"),
    ],
)
def test_unusable_limits_stop_the_node_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**KEYS_ENV, name: value}, data_dir=tmp_path)
