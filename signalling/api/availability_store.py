"""Clinicians' availability in Redis: their weekly windows and days off.

Both live in the clinician's calendar (hash tag ``{cal:<clinician>}``, see
`signalling.calendar`): ``vst:{cal:<c>}:windows`` and ``vst:{cal:<c>}:days_off``, hashes of
id -> msgpack record (fields by name, dates as ISO text). A change is a compare-and-set on
the record, in one script over that one key: a change decided on a stale read is refused
and decided again. Removed windows and days off stay (soft deletes), for history.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import msgpack
from redis.asyncio import Redis

from rooms.availability import DayOff, ExceptionId, Weekday, Window, WindowId
from signalling.api.errors import NotFound, ServiceUnavailable
from signalling.keys import availability_key, days_off_key

ATTEMPTS = 20

_SWAP = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_WINDOW_FIELDS = tuple(f.name for f in fields(Window))
_DAY_OFF_FIELDS = tuple(f.name for f in fields(DayOff))
_DATES = ("valid_from", "valid_until", "date")


class AvailabilityStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._swap = redis.register_script(_SWAP)

    async def windows(self, clinician: str) -> list[Window]:
        """The clinician's windows (removed ones too), oldest first."""
        raw: Any = await self.redis.hvals(availability_key(clinician))
        return sorted((_window(r) for r in raw), key=lambda w: (w.created_at, w.id))

    async def days_off(self, clinician: str) -> list[DayOff]:
        """The clinician's days off (removed ones too), by date."""
        raw: Any = await self.redis.hvals(days_off_key(clinician))
        return sorted((_day_off(r) for r in raw), key=lambda d: (d.date, d.created_at, d.id))

    async def window(self, clinician: str, window_id: str) -> Window:
        return _window(await self._get(availability_key(clinician), window_id, "window"))

    async def add_window(self, window: Window) -> None:
        await self._add(availability_key(window.clinician_id), window.id, _pack(window))

    async def add_day_off(self, day: DayOff) -> None:
        await self._add(days_off_key(day.clinician_id), day.id, _pack(day))

    async def change_window(
        self, clinician: str, window_id: str, decide: Callable[[Window], Window]
    ) -> Window:
        """Load, ``decide`` (which may raise to change nothing), save; again if the record
        changed meanwhile. Returns the new window."""
        key = availability_key(clinician)
        for _ in range(ATTEMPTS):
            raw = await self._get(key, window_id, "window")
            new = decide(_window(raw))
            if await self._swap(keys=[key], args=[window_id, raw, _pack(new)]):
                return new
        raise ServiceUnavailable(f"window {window_id} is changing too fast: try again")

    async def remove_day_off(self, clinician: str, exception_id: str, now: float) -> DayOff:
        key = days_off_key(clinician)
        for _ in range(ATTEMPTS):
            raw = await self._get(key, exception_id, "exception")
            new = _day_off(raw).remove(now)
            if await self._swap(keys=[key], args=[exception_id, raw, _pack(new)]):
                return new
        raise ServiceUnavailable(f"exception {exception_id} is changing too fast: try again")

    async def _get(self, key: str, item: str, noun: str) -> bytes:
        raw: Any = await self.redis.hget(key, item)
        if raw is None:
            raise NotFound(f"no {noun} {item}", {f"{noun}_id": item})
        return bytes(raw)

    async def _add(self, key: str, item: str, record: bytes) -> None:
        if not await self.redis.hsetnx(key, item, record):  # ids are random: a bug
            raise RuntimeError(f"{item} exists already")


def _pack(value: Window | DayOff) -> bytes:
    names = _WINDOW_FIELDS if isinstance(value, Window) else _DAY_OFF_FIELDS
    record: dict[str, Any] = {name: getattr(value, name) for name in names}
    for name in _DATES:
        if isinstance(record.get(name), datetime.date):
            record[name] = record[name].isoformat()
    if isinstance(value, Window):
        record["day"] = value.day.value
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def _unpack(raw: bytes, names: tuple[str, ...]) -> dict[str, Any]:
    record = {k: v for k, v in msgpack.unpackb(raw, raw=False).items() if k in names}
    for name in _DATES:
        if record.get(name) is not None:
            record[name] = datetime.date.fromisoformat(record[name])
    return record


def _window(raw: bytes) -> Window:
    record = _unpack(raw, _WINDOW_FIELDS)
    record["day"] = Weekday(record["day"])
    record["id"] = WindowId(record["id"])
    return Window(**record)


def _day_off(raw: bytes) -> DayOff:
    record = _unpack(raw, _DAY_OFF_FIELDS)
    record["id"] = ExceptionId(record["id"])
    return DayOff(**record)
