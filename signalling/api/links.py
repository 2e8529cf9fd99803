"""Rooms and join links as the API manages them (seeds 000, 001, 003).

A clinician has one persistent room; ad-hoc rooms and rooms personalised for one client
(with a title) can be made too. A join link is a signed join token in the fragment of
``<base>/join/<room>#<token>``; its token id is the link id, so a link can be revoked
(refused at hello from then on) and regenerated (the old one revoked, a new one made).

Keys: ``vst:room:<id>`` (room record), ``vst:link:<id>`` (link record, with whether it is
revoked), ``vst:{<room>}:links`` (the room's links).

A link is stored by its id and its claims, never as the bearer URL: the URL is signed again
from them when the API returns it (with the key that signed it first, while the ring has it,
so it is the same string). A link record expires `Settings.retention` after the link does; by
then its token has long stopped working, revoked or not.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from admission.tokens import JoinClaims, KeyRing, encode_join
from rooms.ids import AppointmentId, RoomId
from rooms.roles import Role
from signalling.api.context import ApiContext
from signalling.api.errors import NotFound
from signalling.keys import LEGACY_REVOKED, link_key, room_key, room_links_key

DEFAULT_LINK_LIFETIME = 30 * 86400.0
LINK_FORMAT = 2  # 2: claims and the signing key's id, no URL


class RoomKind(enum.Enum):
    CLINICIAN = "clinician"  # the clinician's persistent room
    ADHOC = "adhoc"  # a room without an appointment
    PERSONAL = "personal"  # a room personalised for one client


class LinkKind(enum.Enum):
    PATIENT = "patient"  # personal: the booked patient, who is counted in capacity
    GENERAL = "general"  # anyone with the link, who types a name (a guest)
    CLINICIAN = "clinician"  # the host

    @property
    def role(self) -> Role:
        return {
            LinkKind.PATIENT: Role.PATIENT,
            LinkKind.GENERAL: Role.GUEST,
            LinkKind.CLINICIAN: Role.HOST,
        }[self]


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: RoomId
    kind: RoomKind
    title: str | None
    clinician_id: str | None
    patient_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    room: RoomId
    kind: LinkKind
    subject: str | None
    name: str | None
    appointment: AppointmentId | None
    starts_at: float | None
    ends_at: float | None
    capacity: int | None
    created_at: float
    expires_at: float
    revoked_at: float | None
    url: str  # signed again from the claims on every read; never stored
    key_id: str  # the key that signed it

    def status(self, now: float) -> str:
        """active, expired (needs regenerating) or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


def clinician_room_id(clinician_id: str) -> RoomId:
    """The clinician's persistent room: the same for every patient and every day."""
    return RoomId("rm_" + hashlib.sha256(clinician_id.encode()).hexdigest()[:20])


class Links:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.redis = ctx.redis

    # -- rooms ----------------------------------------------------------------------------

    async def clinician_room(self, clinician_id: str) -> RoomRecord:
        """The clinician's persistent room, made on first use."""
        record = RoomRecord(
            clinician_room_id(clinician_id), RoomKind.CLINICIAN, None, clinician_id, None,
            self.ctx.clock(),
        )  # fmt: skip
        await self.redis.set(room_key(record.id), _pack_room(record), nx=True)
        return await self.room(record.id)

    async def create_room(
        self, kind: RoomKind, *, title: str | None, clinician_id: str | None, patient_id: str | None
    ) -> RoomRecord:
        record = RoomRecord(
            RoomId("rm_" + secrets.token_hex(10)), kind, title, clinician_id, patient_id,
            self.ctx.clock(),
        )  # fmt: skip
        await self.redis.set(room_key(record.id), _pack_room(record))
        return record

    async def room(self, room_id: str) -> RoomRecord:
        raw: Any = await self.redis.get(room_key(room_id))
        if raw is None:
            raise NotFound(f"no room {room_id}", {"room_id": room_id})
        return _unpack_room(raw)

    # -- links ----------------------------------------------------------------------------

    async def issue(
        self,
        room: RoomId,
        kind: LinkKind,
        *,
        subject: str | None = None,
        name: str | None = None,
        appointment: AppointmentId | None = None,
        starts_at: float | None = None,
        ends_at: float | None = None,
        capacity: int | None = None,
        lifetime: float = DEFAULT_LINK_LIFETIME,
    ) -> Link:
        """Sign and record a new join link."""
        link = self._sign(
            room, kind, subject=subject, name=name, appointment=appointment,
            starts_at=starts_at, ends_at=ends_at, capacity=capacity, lifetime=lifetime,
        )  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:
            self._record(pipe, link)
            await pipe.execute()
        return link

    def _sign(
        self,
        room: RoomId,
        kind: LinkKind,
        *,
        subject: str | None,
        name: str | None,
        appointment: AppointmentId | None,
        starts_at: float | None,
        ends_at: float | None,
        capacity: int | None,
        lifetime: float,
    ) -> Link:
        """A new link with its signed token; nothing is written yet."""
        now = self.ctx.clock()
        link_id = "lk_" + secrets.token_hex(10)
        claims = JoinClaims(
            room=room,
            role=kind.role,
            subject=subject if kind is not LinkKind.GENERAL else None,
            name=name if kind is not LinkKind.GENERAL else None,
            appointment=appointment,
            starts_at=starts_at,
            ends_at=ends_at,
            capacity=capacity,
            not_before=now - 60.0,
            expires_at=now + lifetime,
            token_id=link_id,
        )
        keyring = self.ctx.settings.keyring
        link = Link(
            link_id, room, kind, claims.subject, claims.name, appointment, starts_at, ends_at,
            capacity, now, claims.expires_at, None, "", keyring.signing_key_id,
        )  # fmt: skip
        return self._signed(link)

    def _signed(self, link: Link) -> Link:
        """``link`` with its URL, signed from its claims."""
        keyring = self.ctx.settings.keyring
        if link.key_id in keyring.keys:  # the same key: the same URL as when it was issued
            keyring = KeyRing(keyring.keys, link.key_id)
        claims = JoinClaims(
            room=link.room,
            role=link.kind.role,
            subject=link.subject,
            name=link.name,
            appointment=link.appointment,
            starts_at=link.starts_at,
            ends_at=link.ends_at,
            capacity=link.capacity,
            not_before=link.created_at - 60.0,
            expires_at=link.expires_at,
            token_id=link.id,
        )
        token = encode_join(claims, keyring)
        return replace(link, url=f"{self.ctx.settings.base_url}/join/{link.room}#{token}")

    async def get(self, link_id: str) -> Link:
        raw: Any = await self.redis.get(link_key(link_id))
        if raw is None:
            raise NotFound(f"no link {link_id}", {"link_id": link_id})
        return self._signed(_unpack_link(raw))

    async def urls(self, link_ids: list[str | None]) -> list[str | None]:
        """The URLs of links by id (None for None, or for a link that is gone), in one
        round trip."""
        wanted = [i for i in link_ids if i is not None]
        if not wanted:
            return [None] * len(link_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for link_id in wanted:
                pipe.get(link_key(link_id))
            raws: list[Any] = await pipe.execute()
        found = {
            i: self._signed(_unpack_link(raw)).url
            for i, raw in zip(wanted, raws, strict=True)
            if raw is not None
        }
        return [None if i is None else found.get(i) for i in link_ids]

    async def of_room(self, room: RoomId) -> list[Link]:
        """The room's links, oldest first (ties in id order, so pages are stable)."""
        ids: Any = await self.redis.smembers(room_links_key(room))
        # One round trip for all records (a pipeline, not MGET: the link keys are in other
        # hash slots). An id whose record is missing (its write did not complete) is skipped
        # rather than failing the whole listing.
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.get(link_key(i.decode()))
            raws: list[Any] = await pipe.execute()
        links = [self._signed(_unpack_link(raw)) for raw in raws if raw is not None]
        return sorted(links, key=lambda link: (link.created_at, link.id))

    async def revoke(self, link_id: str) -> Link:
        """Refuse the link at hello from now on (idempotent): one write, of its record."""
        link = await self.get(link_id)
        if link.revoked_at is None:
            link = replace(link, revoked_at=self.ctx.clock())
            await self._store(link)
        return link

    async def regenerate(self, link_id: str, lifetime: float = DEFAULT_LINK_LIFETIME) -> Link:
        """Revoke a link and issue a fresh one for the same room, person and appointment.

        The new link is recorded first: a failure in between leaves the old link as it was
        rather than revoked with no replacement (each write touches one key's hash slot)."""
        old = await self.get(link_id)
        new = self._sign(
            old.room, old.kind, subject=old.subject, name=old.name, appointment=old.appointment,
            starts_at=old.starts_at, ends_at=old.ends_at, capacity=old.capacity, lifetime=lifetime,
        )  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:
            self._record(pipe, new)
            await pipe.execute()
        if old.revoked_at is None:
            await self._store(replace(old, revoked_at=new.created_at))
        return new

    def _record(self, pipe: Any, link: Link) -> None:
        """Queue the writes that record a new link on ``pipe``."""
        pipe.set(link_key(link.id), _pack_link(link), ex=self._lifetime(link))
        pipe.sadd(room_links_key(link.room), link.id)

    async def _store(self, link: Link) -> None:
        await self.redis.set(link_key(link.id), _pack_link(link), ex=self._lifetime(link))

    def _lifetime(self, link: Link) -> int:
        """Seconds the record is kept: until the retention period after the link stops
        working (counted on the node's clock, as the link's times are)."""
        return max(1, int(link.expires_at + self.ctx.settings.retention - self.ctx.clock()) + 1)


async def is_revoked(redis: Any, token_id: str) -> bool:
    """Whether the link behind a join token has been revoked. Tokens made outside the API
    (``vestibule link``) have no record, and are never revoked; a record outlives its
    link's tokens (`Links._lifetime`), so a revoked link's record is there while it could
    still be used."""
    raw: Any = await redis.get(link_key(token_id))
    return raw is not None and _unpack_link(raw).revoked_at is not None


async def migrate_revocations(redis: Any) -> int:
    """Revocations kept by an older version in one set (read on every hello) move onto
    their links' records. Idempotent; returns how many moved."""
    ids: Any = await redis.smembers(LEGACY_REVOKED)
    moved = 0
    for raw_id in ids:
        key = link_key(raw_id.decode())
        raw: Any = await redis.get(key)
        if raw is not None:
            link = _unpack_link(raw)
            if link.revoked_at is None:
                await redis.set(
                    key, _pack_link(replace(link, revoked_at=link.created_at)), keepttl=True
                )
        await redis.srem(LEGACY_REVOKED, raw_id)
        moved += 1
    return moved


def _pack_room(r: RoomRecord) -> bytes:
    return msgpack.packb([r.id, r.kind.value, r.title, r.clinician_id, r.patient_id, r.created_at])


def _unpack_room(raw: bytes) -> RoomRecord:
    rid, kind, title, clinician, patient, created = msgpack.unpackb(raw, raw=False)
    return RoomRecord(RoomId(rid), RoomKind(kind), title, clinician, patient, created)


def _pack_link(k: Link) -> bytes:
    """The record: the claims and the key id, never the URL (a bearer secret)."""
    return msgpack.packb(
        [LINK_FORMAT, k.id, k.room, k.kind.value, k.subject, k.name, k.appointment,
         k.starts_at, k.ends_at, k.capacity, k.created_at, k.expires_at, k.revoked_at, k.key_id]
    )  # fmt: skip


def _unpack_link(raw: bytes) -> Link:
    f = msgpack.unpackb(raw, raw=False)
    if f[0] != LINK_FORMAT:  # an older record: the fields, then the URL (whose token names
        # the key that signed it: signed again with it, it is the same URL)
        kid = f[12].partition("#")[2].split(".")[1]
        return Link(
            f[0], RoomId(f[1]), LinkKind(f[2]), f[3], f[4], f[5], f[6], f[7], f[8], f[9],
            f[10], f[11], "", kid,
        )  # fmt: skip
    return Link(
        f[1], RoomId(f[2]), LinkKind(f[3]), f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11],
        f[12], "", f[13],
    )  # fmt: skip
