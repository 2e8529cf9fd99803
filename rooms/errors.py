"""Errors of the room core.

    RoomError                  base; ``code`` is the stable wire error code
    ├── UnknownParticipant     the participant is not in the room      (unknown_participant)
    ├── InvalidState           the command does not fit the participant's or room's state
    │                                                                  (invalid_state)
    └── SessionNotStarted      the command needs a started call session (session_not_started)

A command that raises has changed nothing: rooms validate before they emit events.
"""


class RoomError(Exception):
    """Base of the room core's errors; ``code`` is stable, ``str(exc)`` is for humans."""

    code = "room_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details)


class UnknownParticipant(RoomError):
    code = "unknown_participant"


class InvalidState(RoomError):
    code = "invalid_state"


class SessionNotStarted(RoomError):
    code = "session_not_started"
