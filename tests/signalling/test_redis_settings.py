"""Which Redis a node uses: one Redis or a cluster, and how many replicas each append
waits for (signalling/settings.py, signalling/redis_client.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from signalling.redis_client import cluster_url, connect, is_cluster
from signalling.settings import ConfigError, Settings
from tests.support import KEYS_ENV


def from_env(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**KEYS_ENV, **env}, data_dir=tmp_path)


def test_one_redis_by_default_and_no_wait(tmp_path: Path) -> None:
    settings = from_env(tmp_path, VESTIBULE_REDIS_URL="redis://127.0.0.1:6379/0")
    assert not settings.cluster
    assert settings.wait_replicas == 0
    assert settings.redis_wait_timeout == 1.0


@pytest.mark.parametrize(
    "env",
    [
        {"VESTIBULE_REDIS_URL": "redis+cluster://10.0.0.1:7000"},
        {"REDIS_URL": "rediss+cluster://10.0.0.1:7000"},
        {"VESTIBULE_REDIS_URL": "redis://10.0.0.1:7000", "VESTIBULE_REDIS_CLUSTER": "1"},
    ],
)
def test_a_cluster_by_url_or_flag_waits_for_one_replica(
    tmp_path: Path, env: dict[str, str]
) -> None:
    settings = from_env(tmp_path, **env)
    assert settings.cluster
    assert settings.wait_replicas == 1


def test_the_wait_can_be_set(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        VESTIBULE_REDIS_URL="redis+cluster://10.0.0.1:7000",
        VESTIBULE_REDIS_WAIT="0",
        VESTIBULE_REDIS_WAIT_TIMEOUT="0.25",
    )
    assert (settings.wait_replicas, settings.redis_wait_timeout) == (0, 0.25)
    assert from_env(tmp_path, VESTIBULE_REDIS_WAIT="2").wait_replicas == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VESTIBULE_REDIS_WAIT": "-1"}, "must not be negative"),
        ({"VESTIBULE_REDIS_WAIT": "one"}, "whole number"),
        ({"VESTIBULE_REDIS_WAIT_TIMEOUT": "0"}, "VESTIBULE_REDIS_WAIT_TIMEOUT must be more than 0"),
        ({"VESTIBULE_REDIS_CLUSTER": "maybe"}, "VESTIBULE_REDIS_CLUSTER"),
    ],
)
def test_impossible_redis_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(tmp_path, **env)


async def test_the_url_picks_the_client() -> None:
    assert cluster_url("redis+cluster://h:1") == "redis://h:1"
    assert cluster_url("REDISS+CLUSTER://h:1/0") == "rediss://h:1/0"
    assert cluster_url("redis://h:1") is None
    assert cluster_url("unix:///tmp/r.sock") is None
    made = connect("redis+cluster://127.0.0.1:1")  # no connection is made yet
    assert isinstance(made, RedisCluster)
    assert is_cluster(made)
    await made.aclose()
    plain = connect("redis://127.0.0.1:1/0")
    assert not is_cluster(plain)
    await plain.aclose()
