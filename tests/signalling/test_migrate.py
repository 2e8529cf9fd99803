"""A node on one Redis moves what an older version kept under the key names of before
(signalling/migrate.py): the API keys still work, queued invitations and change notes are
not lost, and a second run moves nothing."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rooms.ids import RoomId
from signalling import keys
from signalling.api.keys import ApiKeys
from signalling.migrate import migrate


async def test_the_keys_of_before_move_to_their_names_of_now(redis: Redis) -> None:
    made, _ = await ApiKeys(redis).create("clinic")
    for new, old in ((keys.API_KEYS, "vst:apikeys"), (keys.API_KEY_IDS, "vst:apikey_ids")):
        await redis.rename(new, old)  # as an older version kept them
    assert await redis.exists(keys.API_KEYS) == 0
    await redis.xadd("vst:outbox", {"t": "inv_1:0"})
    await redis.xgroup_create("vst:outbox", "delivery", id="0")
    await redis.zadd("vst:outbox:due", {"inv_2:1": 5.0})
    await redis.set("vst:invitation:inv_1", b"record")
    await redis.lpush("vst:invitations:apt_1", "inv_1")
    await redis.xadd(keys.LEGACY_CHANGES, {"r": "room1"})
    await redis.xadd(keys.LEGACY_CHANGES, {"r": "room2"})
    await redis.zadd(keys.LEGACY_WINDOWS, {"room1\x00apt_1": 100.0})
    await redis.zadd(keys.LEGACY_RETENTION, {"room2": 200.0})
    await redis.zadd(keys.LEGACY_HOOKS_DUE, {"room3": 300.0})

    assert await migrate(redis) > 0
    assert await migrate(redis) == 0  # nothing left under the old names

    assert (await ApiKeys(redis).list())[0].id == made.id
    assert await redis.xlen(keys.OUTBOX) == 1
    groups: Any = await redis.xinfo_groups(keys.OUTBOX)
    assert [g["name"] for g in groups] == [b"delivery"]
    assert await redis.zscore(keys.OUTBOX_DUE, "inv_2:1") == 5.0
    assert await redis.get(keys.invitation_key("inv_1")) == b"record"
    assert await redis.lrange(keys.appointment_invitations_key("apt_1"), 0, -1) == [b"inv_1"]
    for room in ("room1", "room2"):
        notes: Any = await redis.xrange(keys.changes_of(RoomId(room)))
        assert room.encode() in [fields[b"r"] for _, fields in notes]
    assert await redis.zscore(keys.windows_of("room1"), "room1\x00apt_1") == 100.0
    assert await redis.zscore(keys.retention_of("room2"), "room2") == 200.0
    assert await redis.zscore(keys.hooks_due_of("room3"), "room3") == 300.0
    before = ["vst:apikeys", "vst:outbox", "vst:invitation:inv_1", keys.LEGACY_CHANGES]
    assert await redis.exists(*before) == 0
