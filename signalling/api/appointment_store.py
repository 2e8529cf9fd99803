"""Appointments in Redis.

``vst:appt:<id>`` holds one appointment as msgpack (its fields by name, so records written
by an older version still load) with the ids of its join links. The links themselves
(``video_link``, ``meeting_url``) are bearer secrets and are not in the record: every read
signs them again from their link records (`signalling.api.links`). Changes are
compare-and-set on the whole record: a change decided on a stale read is refused and
decided again, so two requests racing to cancel and complete cannot both win.

Sorted sets by start time index the records: ``vst:appts`` (all), and
``vst:appts:clinician:<id>`` / ``vst:appts:patient:<id>`` for the two filters a clinic uses
most. They are written after the record (each script keeps to one key, so the same code
runs on Redis Cluster); a list always re-checks the record, so an index entry left stale by
a node that died between the two writes can hide an appointment from one list but never
show a wrong one.

The status projector's outcomes reach the appointment through `outcome_hook`; a read of an
active appointment also picks up an outcome its room has settled, in case the hook's write
was lost.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import msgpack

from rooms.appointments import (
    Actor,
    Appointment,
    AppointmentStatus,
    Attendance,
    BookingSource,
    ContactChannel,
    RemoteChannel,
)
from rooms.ids import AppointmentId, RoomId
from rooms.projection import Outcome
from signalling.api.context import ApiContext
from signalling.api.errors import NotFound, ServiceUnavailable
from signalling.api.links import Links
from signalling.keys import (
    APPOINTMENTS,
    appointment_key,
    clinician_appointments_key,
    outcomes_key,
    patient_appointments_key,
)
from signalling.projector import OutcomeHook

log = logging.getLogger("vestibule.signalling.api.appointments")

ALL = APPOINTMENTS
ATTEMPTS = 20  # compare-and-set retries before a change gives up
PAGE = 200

_SWAP = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

_ENUMS: dict[str, Any] = {
    "status": AppointmentStatus,
    "remote_channel": RemoteChannel,
    "preferred_channel": ContactChannel,
    "attendance_status": Attendance,
    "booking_source": BookingSource,
    "cancelled_by": Actor,
}
_NAMES = tuple(f.name for f in fields(Appointment))
_LINKS = frozenset({"video_link", "meeting_url"})  # never stored: signed again on each read


record_key = appointment_key
clinician_index = clinician_appointments_key
patient_index = patient_appointments_key


@dataclass(frozen=True, slots=True)
class Stored:
    """An appointment with the ids of its join links (to revoke or replace them)."""

    appointment: Appointment
    patient_link: str | None = None
    clinician_link: str | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """What a list keeps; None keeps everything. ``start_max_open`` makes ``start_max``
    exclusive."""

    patient_id: str | None = None
    clinician_id: str | None = None
    statuses: frozenset[AppointmentStatus] | None = None
    start_min: float | None = None
    start_max: float | None = None
    start_max_open: bool = False
    appointment_type_id: str | None = None
    location_id: str | None = None

    def keep(self, a: Appointment) -> bool:
        return (
            (self.patient_id is None or a.patient_id == self.patient_id)
            and (self.clinician_id is None or a.clinician_profile_id == self.clinician_id)
            and (self.statuses is None or a.status in self.statuses)
            and (self.start_min is None or a.start_time >= self.start_min)
            and (
                self.start_max is None
                or a.start_time < self.start_max
                or (not self.start_max_open and a.start_time == self.start_max)
            )
            and (
                self.appointment_type_id is None
                or a.appointment_type_id == self.appointment_type_id
            )
            and (self.location_id is None or a.location_id == self.location_id)
        )

    @property
    def only_times(self) -> bool:
        """Whether the index alone answers (no filter beyond the index and the times)."""
        return (
            (self.patient_id is None or self.clinician_id is None)
            and self.statuses is None
            and self.appointment_type_id is None
            and self.location_id is None
        )


class AppointmentStore:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.redis = ctx.redis
        self._swap = ctx.redis.register_script(_SWAP)

    # -- reading --------------------------------------------------------------------------

    async def load(self, appointment: str) -> tuple[Stored, bytes]:
        """The stored appointment and its raw record (to `save` a change against);
        raise NotFound."""
        raw: Any = await self.redis.get(record_key(appointment))
        if raw is None:
            raise NotFound(f"no appointment {appointment}", {"id": appointment})
        return (await self._with_links([decode(raw)]))[0], raw

    async def get(self, appointment: str) -> Appointment:
        """The appointment, with any outcome its room has settled; raise NotFound."""
        stored, _ = await self.load(appointment)
        return (await self.reconcile([stored.appointment]))[0]

    async def list(
        self, filters: Filters, *, limit: int, offset: int
    ) -> tuple[builtins.list[Appointment], bool]:
        """A page of appointments by start time (then id), and whether more follow."""
        if filters.clinician_id is not None:
            index = clinician_index(filters.clinician_id)
        elif filters.patient_id is not None:
            index = patient_index(filters.patient_id)
        else:
            index = ALL
        low = "-inf" if filters.start_min is None else repr(filters.start_min)
        high = "+inf" if filters.start_max is None else repr(filters.start_max)
        if filters.start_max is not None and filters.start_max_open:
            high = "(" + high
        if filters.only_times:  # the index answers: read just the page
            ids: Any = await self.redis.zrangebyscore(index, low, high, start=offset, num=limit + 1)
            page = [a for a in await self._read(ids[:limit]) if filters.keep(a)]
            more = len(ids) > limit
        else:  # read the index in pages, keeping what matches, until one past the page
            found: builtins.list[Appointment] = []
            position = 0
            while len(found) <= offset + limit:
                ids = await self.redis.zrangebyscore(index, low, high, start=position, num=PAGE)
                position += len(ids)
                found += [a for a in await self._read(ids) if filters.keep(a)]
                if len(ids) < PAGE:
                    break
            page = found[offset : offset + limit]
            more = len(found) > offset + limit
        return await self.reconcile(page), more

    # -- writing --------------------------------------------------------------------------

    async def create(self, stored: Stored) -> None:
        """Record a new appointment (its id must be fresh)."""
        a = stored.appointment
        created = await self.redis.set(record_key(a.id), encode(stored), nx=True)
        if not created:  # ids are random UUIDs: this is a bug, not a client's mistake
            raise RuntimeError(f"appointment {a.id} exists already")
        await self._index(None, a)
        await self.ctx.followers.saved(None, a)

    async def save(self, raw: bytes, stored: Stored) -> bool:
        """Replace the record read as ``raw`` with ``stored``; False (nothing written) if it
        changed meanwhile: load again and decide again."""
        swapped = await self._swap(
            keys=[record_key(stored.appointment.id)], args=[raw, encode(stored)]
        )
        if not swapped:
            return False
        old = decode(raw).appointment
        await self._index(old, stored.appointment)
        await self.ctx.followers.saved(old, stored.appointment)
        return True

    async def change(
        self, appointment: str, decide: Callable[[Stored], Awaitable[Stored]]
    ) -> tuple[Stored, Stored]:
        """Load, ``decide`` the new state, save; again from the top if the record changed
        meanwhile. ``decide`` may raise to change nothing, or return its argument. Returns
        the state the change was decided on, and the new one."""
        for _ in range(ATTEMPTS):
            stored, raw = await self.load(appointment)
            new = await decide(stored)
            if new is stored or await self.save(raw, new):
                return stored, new
        raise ServiceUnavailable(
            f"appointment {appointment} is changing too fast: try again", {"id": appointment}
        )

    async def apply_outcome(self, room: RoomId, appointment: str, outcome: Outcome) -> None:
        """The room settled ``outcome`` for ``appointment``: its status follows if it is
        still active and still in that room (tokens made outside the API have none)."""

        followed: builtins.list[Appointment] = []

        async def decide(stored: Stored) -> Stored:
            followed.clear()
            a = stored.appointment
            new = a.apply_outcome(outcome, self.ctx.clock()) if a.room_id == room else a
            if new is a:
                return stored
            followed.append(new)
            return Stored(new, stored.patient_link, stored.clinician_link)

        try:
            await self.change(appointment, decide)
        except NotFound:
            return
        if followed:
            log.info("appointment %s is %s, as its room saw", appointment, outcome.value)

    async def reconcile(
        self, appointments: builtins.list[Appointment]
    ) -> builtins.list[Appointment]:
        """The appointments with any outcome their rooms have settled applied (and saved)."""
        open_ = [a for a in appointments if a.active and a.room_id is not None]
        if not open_:
            return appointments
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in open_:
                assert a.room_id is not None
                pipe.hget(outcomes_key(a.room_id), a.id)
            settled: builtins.list[Any] = await pipe.execute()
        fresh: dict[str, Appointment] = {}
        for a, raw in zip(open_, settled, strict=True):
            if raw is not None:
                assert a.room_id is not None
                await self.apply_outcome(a.room_id, a.id, Outcome(raw.decode()))
                fresh[a.id] = (await self.load(a.id))[0].appointment
        return [fresh.get(a.id, a) for a in appointments]

    async def _read(self, ids: builtins.list[bytes]) -> builtins.list[Appointment]:
        if not ids:
            return []
        # Per-key reads in one round trip, not MGET: the records are on several shards
        # of a cluster (each is read whole; the page needs no snapshot across them).
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.get(record_key(i.decode()))
            raws: builtins.list[Any] = await pipe.execute()
        stored = await self._with_links([decode(raw) for raw in raws if raw is not None])
        return [s.appointment for s in stored]

    async def _with_links(self, stored: builtins.list[Stored]) -> builtins.list[Stored]:
        """The appointments with their join links' URLs, signed from the link records
        (absent once a link record has gone, `Links._lifetime`)."""
        linked = [s for s in stored if s.patient_link or s.clinician_link]
        ids = [i for s in linked for i in (s.patient_link, s.clinician_link)]
        urls = iter(await Links(self.ctx).urls(ids))
        signed = {
            s.appointment.id: replace(
                s, appointment=replace(s.appointment, video_link=next(urls), meeting_url=next(urls))
            )
            for s in linked
        }
        return [signed.get(s.appointment.id, s) for s in stored]

    async def _index(self, old: Appointment | None, new: Appointment) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            score: dict[str, float] = {new.id: new.start_time}
            pipe.zadd(ALL, score)
            for name, index in (
                ("clinician_profile_id", clinician_index),
                ("patient_id", patient_index),
            ):
                before = None if old is None else getattr(old, name)
                after = getattr(new, name)
                if before is not None and before != after:
                    pipe.zrem(index(before), new.id)
                if after is not None:
                    pipe.zadd(index(after), score)
            await pipe.execute()


def outcome_hook(ctx: ApiContext) -> OutcomeHook:
    """What the status projector calls with each outcome it settles."""
    store = AppointmentStore(ctx)

    async def hook(room: RoomId, appointment: AppointmentId, outcome: Outcome) -> None:
        await store.apply_outcome(room, appointment, outcome)

    return hook


# -- the record -----------------------------------------------------------------------------


def encode(stored: Stored) -> bytes:
    a = stored.appointment
    values = {name: getattr(a, name) for name in _NAMES if name not in _LINKS}
    for name in _ENUMS:
        if values[name] is not None:
            values[name] = values[name].value
    record = {"a": values, "pl": stored.patient_link, "cl": stored.clinician_link}
    return msgpack.packb(record, use_bin_type=True)


def decode(raw: bytes) -> Stored:
    record = msgpack.unpackb(raw, raw=False)
    values = {k: v for k, v in record["a"].items() if k in _NAMES}
    for name, kind in _ENUMS.items():
        if values.get(name) is not None:
            values[name] = kind(values[name])
    return Stored(Appointment(**values), record.get("pl"), record.get("cl"))
