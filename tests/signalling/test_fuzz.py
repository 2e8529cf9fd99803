"""Property-based tests of the codec (signalling/wire.py), with the strategies of
tests/fuzz.py: whatever a frame holds, `decode` either refuses it with one of the documented
errors or accepts a message that both codecs can carry on (a relay to a client of either
codec, a batch through Redis, an error echoing a part of it)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings

from signalling.errors import (
    FrameTooLarge,
    InvalidMessage,
    MalformedMessage,
    UnknownType,
)
from signalling.wire import MAX_DEPTH, Codec, decode, error
from tests.fuzz import deep, frames, messages, nest

LIMIT = 64 * 1024
DOCUMENTED = (FrameTooLarge, InvalidMessage, MalformedMessage, UnknownType)
FUZZ = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def carried_on(message: Any) -> None:
    """What the server does with an accepted message: encode it (or parts of it, or a
    relay of it) in both codecs, and pack it into a batch for another node."""
    for codec in Codec:
        again = codec.encode(message)
        assert decode(again, 10 * LIMIT)[0] == message
        codec.encode({"type": "candidate", "from": "p_1", "candidate": message.get("candidate")})
    msgpack.packb(["r1", "p_1", message], use_bin_type=True)


@FUZZ
@given(frames)
def test_every_frame_is_refused_as_documented_or_accepted_and_carried_on(
    frame: str | bytes,
) -> None:
    try:
        message, codec = decode(frame, LIMIT)
    except DOCUMENTED as exc:
        # Every refusal is an error message the client can be sent, in its codec.
        reply = error(exc.code, exc.message, exc.details, exc.ref)
        for codec in Codec:
            codec.encode(reply)
        return
    assert codec is (Codec.JSON if isinstance(frame, str) else Codec.MSGPACK)
    carried_on(message)


@FUZZ
@given(messages)
@example({"type": "answer", "to": "p_1", "sdp": "\x1c" * 20_000})  # JSON 6x the msgpack
def test_every_message_in_both_codecs_gets_the_same_verdict(message: Any) -> None:
    """The same verdict in both codecs, but for size: the limit is on the frame's bytes,
    and the JSON of a message can be larger than its msgpack (escapes, UTF-8 of text that
    msgpack carries as is), so a message near the limit fits in one codec and not in the
    other; then the larger frame, and only it, is refused as too large."""
    outcomes: list[object] = []
    over: list[bool] = []
    for codec in Codec:
        try:
            frame = codec.encode(message)
        except (TypeError, ValueError, OverflowError, RecursionError):
            outcomes.append("not encodable")  # the client could not send it like this
            continue
        over.append(len(frame.encode() if isinstance(frame, str) else frame) > LIMIT)
        try:
            decoded, _ = decode(frame, LIMIT)
        except DOCUMENTED as exc:
            outcomes.append((exc.code, exc.details.get("field")))
        else:
            carried_on(decoded)
            outcomes.append("accepted")
    if "not encodable" in outcomes:
        return
    if over[0] == over[1]:
        assert outcomes[0] == outcomes[1], outcomes
    else:
        for outcome, too_large in zip(outcomes, over, strict=True):
            assert (outcome == ("frame_too_large", None)) is too_large, outcomes


@FUZZ
@given(deep)
def test_nesting_is_accepted_exactly_up_to_the_bound(value: Any) -> None:
    depth, probe = 0, value
    while isinstance(probe, list | dict):
        depth += 1
        probe = probe[0] if isinstance(probe, list) else probe["k"]
    message = {"type": "ping", "deep": value}
    frame = msgpack.packb(message, use_bin_type=True)
    if depth + 1 > MAX_DEPTH:  # the message's own map is a level
        with pytest.raises(InvalidMessage) as refused:
            decode(frame, LIMIT)
        assert refused.value.details == {"field": "deep", "max_depth": MAX_DEPTH}
    else:
        carried_on(decode(frame, LIMIT)[0])


def test_the_finding_itself_a_thousand_deep_candidate() -> None:
    message = {"type": "candidate", "to": "p_1", "candidate": nest(1_000, as_map=True)}
    with pytest.raises(InvalidMessage) as refused:
        decode(msgpack.packb(message, use_bin_type=True), LIMIT)
    assert refused.value.details == {"field": "candidate", "max_depth": MAX_DEPTH}
