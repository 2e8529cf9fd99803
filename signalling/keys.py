"""Every Redis key and channel name the node uses: builders, parsers and the hash-tag rules.

The rules (Redis Cluster places a key by the CRC16 of its hash tag, the part between the
first ``{`` and the next ``}``; a key without one by the whole name):

1. Everything of one room carries the room's tag, ``vst:{<room>}:...``: its stream, names,
   routing entries, projection, outcomes, audit trail, links, webhook outbox, and its two
   channels (feed, projected). Each Lua script and each transaction on a room touches only
   these, so it runs on the room's shard.
2. A clinician's calendar carries ``{cal:<clinician>}`` (`signalling.calendar`).
3. Cross-room work is split into buckets, each bucket a tag of its own, so it spreads over
   the shards and no key is written by every event or every hello: the change notes
   (`changes_key`, `CHANGE_BUCKETS` streams, one consumer group per bucket), the join
   windows that close and the rooms due for retention (sorted sets, by room), the booking
   repair tickets (by clinician), the webhook retries (by room).
4. Small sets that must change together and are not on the per-hello or per-event path
   share one tag: the API keys (``{apikeys}``: the record by hash and the index by id,
   written in one transaction) and the invitation outbox (``{outbox}``: the invitations,
   each appointment's list, the ticket stream and the retries, which its scripts and
   transactions change together; invitations are a few per appointment).
5. Keys read or written one at a time, never together, need no tag: an appointment's
   record and its indexes, a link's record, a room's record, idempotency keys, the node
   registry (``vst:nodes``: one write per node per heartbeat, not per hello), a node's
   rooms and its reaper claim, the clinicians' console channels.

Channels follow the same rules, because sharded pub/sub (`signalling.pubsub`) places a
channel by its slot as it does a key: a room's feed is published by the room's append
script, on the room's shard.
"""

from __future__ import annotations

import zlib

from rooms.ids import RoomId

PREFIX = "vst:"
CHANGE_BUCKETS = 16  # change-note streams; fixed: changing it strands notes in the old ones
ROOM_BUCKETS = 16  # window and retention sorted sets

# -- one room (rule 1) ------------------------------------------------------------------


def room_tag(room_id: RoomId | str) -> str:
    return f"vst:{{{room_id}}}"


def events_key(room_id: RoomId | str) -> str:
    """The room's event stream (field ``e``: msgpack of one event)."""
    return f"{room_tag(room_id)}:events"


def names_key(room_id: RoomId | str) -> str:
    """The display names of the people in the room (hash: participant id -> name)."""
    return f"{room_tag(room_id)}:names"


def where_key(room_id: RoomId | str) -> str:
    """Which node holds each participant's connection (hash)."""
    return f"{room_tag(room_id)}:where"


def feed_channel(room_id: RoomId | str) -> str:
    """Where the appends to the room are published."""
    return f"{room_tag(room_id)}:feed"


def parse_feed_channel(channel: str) -> RoomId | None:
    """The room whose feed ``channel`` is, or None if it is no room's feed."""
    if not (channel.startswith("vst:{") and channel.endswith("}:feed")):
        return None
    return RoomId(channel[len("vst:{") : -len("}:feed")])


def projection_key(room_id: RoomId | str) -> str:
    return f"{room_tag(room_id)}:projection"


def outcomes_key(room_id: RoomId | str) -> str:
    return f"{room_tag(room_id)}:outcomes"


def audit_key(room_id: RoomId | str) -> str:
    return f"{room_tag(room_id)}:audit"


def projected_channel(room_id: RoomId | str) -> str:
    """Where the projector says that it saved a new projection of the room."""
    return f"{room_tag(room_id)}:projected"


def room_links_key(room_id: RoomId | str) -> str:
    """The ids of the room's links (set)."""
    return f"{room_tag(room_id)}:links"


def hooks_key(room_id: RoomId | str) -> str:
    """The room's webhook outbox (stream)."""
    return f"{room_tag(room_id)}:hooks"


def hooked_key(room_id: RoomId | str) -> str:
    return f"{room_tag(room_id)}:hooked"


def hooking_key(room_id: RoomId | str) -> str:
    return f"{room_tag(room_id)}:hooking"


# -- buckets of rooms (rule 3) ------------------------------------------------------------


def bucket(name: str, count: int) -> int:
    """The bucket of ``name`` among ``count``: stable across nodes and restarts."""
    return zlib.crc32(name.encode()) % count


def changes_key(bucket_no: int) -> str:
    """Change notes of the rooms of one bucket (stream, field ``r``: the room)."""
    return f"vst:changes:{{c{bucket_no}}}"


def changes_of(room_id: RoomId | str) -> str:
    return changes_key(bucket(str(room_id), CHANGE_BUCKETS))


def windows_key(bucket_no: int) -> str:
    """Join windows that close, of the rooms of one bucket (sorted set by closing time)."""
    return f"vst:windows:{{w{bucket_no}}}"


def windows_of(room_id: RoomId | str) -> str:
    return windows_key(bucket(str(room_id), ROOM_BUCKETS))


def retention_key(bucket_no: int) -> str:
    """Rooms of one bucket, by when to look at what they keep (sorted set)."""
    return f"vst:retention:{{t{bucket_no}}}"


def retention_of(room_id: RoomId | str) -> str:
    return retention_key(bucket(str(room_id), ROOM_BUCKETS))


def hooks_due_key(bucket_no: int) -> str:
    """Rooms of one bucket whose webhook delivery is to be retried (sorted set by when)."""
    return f"vst:hooks:due:{{h{bucket_no}}}"


def hooks_due_of(room_id: RoomId | str) -> str:
    return hooks_due_key(bucket(str(room_id), ROOM_BUCKETS))


HOOKS_DEAD = "vst:hooks:dead"  # events set aside after every attempt (stream)

# -- calendars (rule 2) ---------------------------------------------------------------------


def calendar_tag(clinician: str) -> str:
    return f"vst:{{cal:{clinician}}}"


def busy_key(clinician: str) -> str:
    """Appointment ids by the end of the time each blocks (sorted set: `signalling.calendar`)."""
    return f"{calendar_tag(clinician)}:busy"


def spans_key(clinician: str) -> str:
    """Appointment id -> the span it holds (hash: `signalling.calendar`)."""
    return f"{calendar_tag(clinician)}:spans"


def calendar_events_key(clinician: str) -> str:
    """The clinician's booking events (stream: `signalling.calendar`)."""
    return f"{calendar_tag(clinician)}:events"


def availability_key(clinician: str) -> str:
    """The clinician's availability windows (hash: `signalling.api.availability_store`)."""
    return f"{calendar_tag(clinician)}:windows"


def days_off_key(clinician: str) -> str:
    """The clinician's days off (hash: `signalling.api.availability_store`)."""
    return f"{calendar_tag(clinician)}:days_off"


def repairs_key(bucket_no: int) -> str:
    """Booking repair tickets of one bucket of clinicians (sorted set)."""
    return f"vst:{{bookings:{bucket_no}}}:repairs"


# -- shared small sets (rule 4) -----------------------------------------------------------

API_KEYS = "vst:{apikeys}:by_hash"  # hash: SHA-256 of the key -> record
API_KEY_IDS = "vst:{apikeys}:by_id"  # hash: key id -> SHA-256
OUTBOX = "vst:{outbox}:tickets"  # stream of delivery tickets
OUTBOX_DUE = "vst:{outbox}:due"  # retries to come, by due time


def invitation_key(invitation_id: str) -> str:
    return f"vst:{{outbox}}:invitation:{invitation_id}"


def appointment_invitations_key(appointment_id: str) -> str:
    """The appointment's invitation ids, newest first (list)."""
    return f"vst:{{outbox}}:invitations:{appointment_id}"


# -- keys on their own (rule 5) -----------------------------------------------------------

NODES = "vst:nodes"  # sorted set: node id -> unix time of its last heartbeat


def node_rooms_key(node_id: str) -> str:
    """Rooms in which the node has participants (set)."""
    return f"vst:node:{node_id}:rooms"


def node_channel(node_id: str) -> str:
    """Transient messages for the node's participants."""
    return f"vst:node:{node_id}"


def node_home_channel(node_id: str) -> str:
    """Keeps the node's feed subscription open while it serves no room."""
    return f"vst:node:{node_id}:feed"


def reaper_key(node_id: str) -> str:
    """Who is cleaning up after the dead node (SET NX)."""
    return f"vst:node:{node_id}:reaper"


def appointment_key(appointment_id: str) -> str:
    return f"vst:appt:{appointment_id}"


APPOINTMENTS = "vst:appts"  # sorted set of every appointment, by start


def clinician_appointments_key(clinician: str) -> str:
    return f"vst:appts:clinician:{clinician}"


def patient_appointments_key(patient: str) -> str:
    return f"vst:appts:patient:{patient}"


def idempotency_key(digest: str) -> str:
    return f"vst:idem:{digest}"


def room_key(room_id: RoomId | str) -> str:
    """The room's record (REST API)."""
    return f"vst:room:{room_id}"


def link_key(link_id: str) -> str:
    return f"vst:link:{link_id}"


def console_channel(clinician: str) -> str:
    """Where changes to the clinician's appointments are published (the appointment id)."""
    return f"vst:console:{clinician}"


LEGACY_REVOKED = "vst:links:revoked"  # where revocations were kept before (one global set)

# Names of before: `signalling.migrate` moves what a single Redis still holds under them.
LEGACY_RENAMES = {
    "vst:apikeys": API_KEYS,
    "vst:apikey_ids": API_KEY_IDS,
    "vst:outbox": OUTBOX,
    "vst:outbox:due": OUTBOX_DUE,
}
LEGACY_CHANGES = "vst:changes"
LEGACY_WINDOWS = "vst:windows"
LEGACY_RETENTION = "vst:retention"
LEGACY_HOOKS_DUE = "vst:hooks:due"
LEGACY_PATTERNS = {  # prefix of before -> builder of now, for per-id keys
    "vst:invitation:": invitation_key,
    "vst:invitations:": appointment_invitations_key,
}
