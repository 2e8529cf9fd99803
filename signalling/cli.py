"""The ``vestibule`` command: run a node, make join links."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import logging
import resource
import sys
import time
from collections.abc import Iterator, Sequence

import uvicorn

from admission.tokens import JoinClaims, encode_join, new_token_id
from rooms.ids import AppointmentId, RoomId
from rooms.roles import Role
from signalling import uvicorn_server
from signalling.api.errors import NotFound
from signalling.api.keys import ApiKeys
from signalling.app import create_app
from signalling.redis_client import close as close_redis
from signalling.redis_client import connect as connect_redis
from signalling.redis_server import RedisProcess
from signalling.settings import ConfigError, Settings

BACKLOG = 2048  # a connect storm of thousands must not wait on a backlog of 100


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vestibule", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a node")
    serve.add_argument("--host", help="address to listen on (VESTIBULE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (VESTIBULE_PORT)")
    serve.add_argument("--data-dir", help="where keys and data live (VESTIBULE_DATA_DIR)")

    link = commands.add_parser("link", help="print a join link")
    link.add_argument("--room", required=True)
    link.add_argument("--role", choices=[r.value for r in Role], default=Role.PATIENT.value)
    link.add_argument("--subject", help="stable id of the booked person (none: general link)")
    link.add_argument("--name", help="display name (a guest types one if absent)")
    link.add_argument("--appointment", help="appointment id")
    link.add_argument("--start", help="appointment start, ISO 8601 (opens the join window)")
    link.add_argument("--end", help="appointment end, ISO 8601")
    link.add_argument("--capacity", type=int, help="booked capacity (host links)")
    link.add_argument("--valid-for", type=float, default=7 * 86400.0, help="seconds")
    link.add_argument("--data-dir", help="where the signing keys live (VESTIBULE_DATA_DIR)")

    keys = commands.add_parser("keys", help="manage API keys")
    keys.add_argument("--data-dir", help="where the embedded Redis lives (VESTIBULE_DATA_DIR)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key; it is shown once")
    create.add_argument("--name", required=True, help="what the key is for")
    key_commands.add_parser("list", help="list keys (ids and names, never secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "keys":
            return asyncio.run(_keys(args))
        return _link(args)
    except ConfigError as exc:
        print(f"vestibule: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in ("host", "port", "data_dir") and v}
    settings = Settings.from_env(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    embedded: RedisProcess | None = None
    if settings.redis_url is None:
        embedded = RedisProcess(settings.data_dir / "redis")
        embedded.start()
    app = create_app(settings, redis_url=embedded.url if embedded else None, embedded=embedded)
    config = uvicorn_server.config(
        app,
        app.state.gate,
        settings.limits,
        host=settings.host,
        port=settings.port,
        backlog=BACKLOG,
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    raise_fd_limit()
    tune_gc()
    try:
        uvicorn.Server(config).run()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


# Seconds a stopping node (SIGTERM) gives its connections to finish recording their
# departures after it closed their sockets (1012), before it cancels them: a connection stuck
# on an unreachable Redis must not keep the node from exiting.
SHUTDOWN_GRACE = 2  # uvicorn takes whole seconds


def raise_fd_limit() -> None:
    """Allow this process as many open files as the system lets it: every connection, and
    every socket waiting for its headers or hello (up to ``max_unauthenticated``), is one.
    The soft limit is often 1024 while the hard one is far higher."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# The cyclic collector's pauses grow with the number of live objects: at thousands of
# connections a full collection stalls every socket for tens of milliseconds (bench/: relay
# p99). Everything alive before serving (modules, the app) is moved out of its reach, and
# young collections run an order of magnitude less often: relaying allocates and frees
# dicts by the thousand a second, almost none of which live long or form cycles.
GC_THRESHOLDS = (20_000, 20, 50)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _keys(args: argparse.Namespace) -> int:
    settings = Settings.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    with _redis_url(settings) as url:
        redis = connect_redis(url, cluster=settings.redis_cluster)
        try:
            store = ApiKeys(redis)
            if args.keys_command == "create":
                record, secret = await store.create(args.name)
                print(f"{record.id}\t{secret}")
                print("store this key now: it is not shown again", file=sys.stderr)
            elif args.keys_command == "list":
                for key in await store.list():
                    state = "revoked" if key.revoked_at is not None else "active"
                    print(f"{key.id}\t{state}\t{key.name}")
            else:
                try:
                    record = await store.revoke(args.key_id)
                except NotFound:
                    print(f"vestibule: no API key {args.key_id}", file=sys.stderr)
                    return 1
                print(f"{record.id}\trevoked")
        finally:
            await close_redis(redis)
    return 0


@contextlib.contextmanager
def _redis_url(settings: Settings) -> Iterator[str]:
    """The Redis the server uses: REDIS_URL, else the embedded one (the running node's, or
    started for this command alone)."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    embedded = RedisProcess(settings.data_dir / "redis")
    if embedded.ping():
        yield embedded.url
        return
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


def _link(args: argparse.Namespace) -> int:
    settings = Settings.from_env(**({"data_dir": args.data_dir} if args.data_dir else {}))
    now = time.time()
    claims = JoinClaims(
        room=RoomId(args.room),
        role=Role(args.role),
        subject=args.subject,
        name=args.name,
        appointment=AppointmentId(args.appointment) if args.appointment else None,
        starts_at=_time(args.start),
        ends_at=_time(args.end),
        capacity=args.capacity,
        not_before=now,
        expires_at=now + args.valid_for,
        token_id=new_token_id(),
    )
    print(f"{settings.base_url}/join/{args.room}#{encode_join(claims, settings.keyring)}")
    return 0


def _time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


if __name__ == "__main__":
    sys.exit(main())
