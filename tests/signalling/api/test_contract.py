"""The REST API against its own OpenAPI document: a property-based contract test.

Schemathesis reads the document a real node serves at ``/api/v1/openapi.json`` and generates
requests for every operation in it; each one goes over real HTTP to that node, and every
response must

- not be a server error (``not_a_server_error``),
- have a status the operation documents (``status_code_conformance``),
- be JSON, as documented (``content_type_conformance``),
- match the documented schema for that status (``response_schema_conformance``).

Authorised requests (with an API key) come in positive cases (valid by the document) and
negative ones (some part invalid: the server must refuse it with a documented 4xx, not fail).
Unauthorised requests (no key, an unknown key, another scheme, a revoked key) must get the
documented 401, except on the public operations (the booking page's, ``security: []`` in the
document), which ignore credentials and must still keep to the contract. Each test ends by
asserting that the operations it exercised are exactly the document's, so a new endpoint
cannot escape the contract.

Design: the node runs as a separate process (``python -m signalling.cli serve``) for the whole
module, with a redis-server of its own, the tests' key ring (`tests.support.KEYS_ENV`) and a
webhook channel pointing at a loopback receiver in this process (so invitations can really be
sent). The API keys are made and revoked with ``vestibule keys`` in the same environment, as
an operator would. A process, rather than the in-process `node` fixture, because schemathesis
and Hypothesis are synchronous: they call the server with blocking HTTP from the test's
thread, which would freeze an event loop serving in that thread; in its own process the
server also runs exactly as deployed (real clock, CLI configuration, uvicorn's own loop). The
server's stderr is kept, and teardown fails the module if it logged an ERROR (as the
in-process fixture does).

Random path ids would only ever reach the 404 branch, so the 200 schemas of "get one" and
the actions would go unchecked. The fixture therefore makes a room, a link, an appointment
and an invitation, and every 2xx response of the run adds the ids it names to a pool
(`PARAM_SOURCES` says which path parameter takes ids of which schema). Half of the positive
cases take a path parameter from that pool (as it is when the operation's turn comes), the
other half as generated (any string the document allows). A parameter with no source in the
table is only generated: the operation is still exercised, its 2xx branch maybe not.

Bounded and reproducible: Hypothesis runs a fixed number of examples per operation and mode
(`POSITIVE_EXAMPLES`, `NEGATIVE_EXAMPLES`, `UNAUTHORISED_EXAMPLES` per bad credential) from a
seed fixed per operation and mode, with no example database and a deadline per request; no
wall-clock asserts. Each operation is a subtest (pytest 9's `subtests`), so a failure names
it; schemathesis prints the failing request as a curl command.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from signalling.redis_server import RedisProcess
from tests.cluster import LocalCluster
from tests.support import KEYS_ENV, free_port

Operation: TypeAlias = APIOperation[Any, Any, Any, Any]
AnyCase: TypeAlias = Case[Any]

POSITIVE_EXAMPLES = 30
NEGATIVE_EXAMPLES = 20
UNAUTHORISED_EXAMPLES = 2  # per bad credential
POOL_SIZE = 8  # the newest ids of each kind that positive cases choose from
REQUEST_TIMEOUT = 10.0  # seconds; a hung request fails instead of hanging the suite
STARTUP_TIMEOUT = 30.0

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Path parameter -> (schema, field) of the responses whose values it takes.
PARAM_SOURCES: dict[str, tuple[str, str]] = {
    "id": ("Appointment", "id"),
    "appointment_id": ("Appointment", "id"),
    "room_id": ("Room", "id"),
    "clinician_id": ("Room", "clinician_id"),
    "link_id": ("JoinLink", "id"),
    "invitation_id": ("Invitation", "id"),
    "window_id": ("AvailabilityWindow", "id"),
    "exception_id": ("AvailabilityException", "id"),
    "hold_id": ("Hold", "id"),
}

# Bad credentials: none, a key that never existed, another scheme, a revoked key (filled in).
NO_KEY = None
UNKNOWN_KEY = "Bearer vk_000000000000_not-a-key"
BASIC = "Basic Y29udHJhY3Q6dGVzdA=="

# Seeded per operation (`_run`): the same cases on every run and machine; no database, so
# nothing carries over between runs. The deadline is per example (one request), generous
# for a loaded CI machine; REQUEST_TIMEOUT bounds a request that never returns.
BASE_SETTINGS = settings(
    database=None,
    deadline=timedelta(seconds=5),
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=(HealthCheck.too_slow,),
    print_blob=False,
)

_ERROR_LINE = re.compile(r"^(\S+ \S+ (ERROR|CRITICAL) |(ERROR|CRITICAL):)", re.MULTILINE)


@dataclasses.dataclass
class Api:
    """The running node, as the tests see it."""

    base_url: str  # http://127.0.0.1:PORT/api/v1
    key: str
    revoked_key: str
    document: dict[str, Any]
    schema: schemathesis.BaseSchema
    pools: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    console: str = ""  # a console session (the console's operations take it, not a key)

    def credentials(self, operation: Operation) -> dict[str, str]:
        """The Authorization header the document asks of ``operation``."""
        secret = self.console if _security(self, operation) == [{"console": []}] else self.key
        return {"Authorization": f"Bearer {secret}"}

    @property
    def documented(self) -> set[str]:
        """Every operation of the served document, as ``METHOD /path``."""
        return {
            f"{method.upper()} {path}"
            for path, methods in self.document["paths"].items()
            for method in methods
        }

    def operations(self) -> list[Operation]:
        """The document's operations as schemathesis parsed them; a definition it cannot
        parse fails here, naming it."""
        out = []
        for result in self.schema.get_all_operations():
            assert isinstance(result, Ok), f"unusable operation: {result.err()}"
            out.append(result.ok())
        return out

    def harvest(self, operation: Operation, status: int, body: object) -> None:
        """Add the ids a 2xx response names to the pools of the path parameters they fit."""
        if not 200 <= status < 300 or not isinstance(body, dict):
            return
        name = _data_schema(self.document, operation, status)
        data = body.get("data")
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                continue
            for param, (schema, field) in PARAM_SOURCES.items():
                value = item.get(field)
                if schema == name and isinstance(value, str) and value not in self.pools[param]:
                    self.pools[param].append(value)


def _data_schema(document: dict[str, Any], operation: Operation, status: int) -> str | None:
    """The component name of ``data`` in the documented response (or its items)."""
    responses = document["paths"][operation.path][operation.method.lower()]["responses"]
    response = responses.get(str(status))
    if response is None:
        return None
    data = response["content"]["application/json"]["schema"]["properties"]["data"]
    ref = data.get("items", data).get("$ref")
    return None if ref is None else str(ref).rsplit("/", 1)[-1]


# --- the node: redis-server, webhook receiver, `vestibule serve`, keys, seed data ------------


class _Webhooks(http.server.BaseHTTPRequestHandler):
    """Accepts every invitation webhook (the channel's receiver, as a clinic would run)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows stderr of failing tests


@contextlib.contextmanager
def _webhook_receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/invitations"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _vestibule(env: dict[str, str], *args: str) -> str:
    """Run ``vestibule ARGS`` in ``env``; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "signalling.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"vestibule {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the node exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the node did not serve {url} in {STARTUP_TIMEOUT}s:\n{log.read_text()}")


def _seed(api: Api, client: httpx.Client) -> None:
    """One of each resource, so that path parameters can name things that exist."""

    def post(template: str, body: dict[str, Any], **ids: str) -> dict[str, Any]:
        response = client.post(template.format(**ids), json=body)
        assert response.status_code == 201, f"seeding POST {template}: {response.text}"
        payload: dict[str, Any] = response.json()
        api.harvest(api.schema[template]["POST"], response.status_code, payload)
        data: dict[str, Any] = payload["data"]
        return data

    room = post("/rooms", {"clinician_id": "clin_contract", "title": "Contract"})
    post("/rooms/{room_id}/links", {"kind": "general"}, room_id=room["id"])
    appointment = post(
        "/appointments",
        {
            "title": "Contract test",
            "start_time": "2030-01-07T09:00:00Z",
            "end_time": "2030-01-07T09:30:00Z",
            "clinician_profile_id": "clin_contract",
            "is_remote": True,
            "remote_channel": "video",
            "attendee_phone": "+15550100",
            "preferred_channel": "webhook",
        },
    )
    post("/appointments/{appointment_id}/invitations", {}, appointment_id=appointment["id"])
    signed = post("/console/sessions", {"token": appointment["meeting_url"].split("#", 1)[1]})
    api.console = signed["token"]
    # Availability every day, a day off, and a hold of the first bookable slot.
    clinician = {"clinician_id": "clin_contract"}
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"):
        window = {"day": day, "start_minute": 0, "end_minute": 1440, "time_zone": "UTC"}
        post("/clinicians/{clinician_id}/availability/windows", window, **clinician)
    post("/clinicians/{clinician_id}/availability/exceptions", {"date": "2031-01-01"}, **clinician)
    slots = client.get("/clinicians/clin_contract/slots")
    assert slots.status_code == 200, f"seeding slots: {slots.text}"
    start = slots.json()["data"][0]["start_time"]
    post("/clinicians/{clinician_id}/holds", {"start_time": start}, **clinician)


@pytest.fixture(scope="module", params=["redis", "cluster"])
def api(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Api]:
    """A node running as `vestibule serve`, seeded, with a valid and a revoked API key: on
    one Redis, then on the session's Redis Cluster (emptied first)."""
    root = tmp_path_factory.mktemp("contract")
    port = free_port()
    log = root / "node.log"
    with contextlib.ExitStack() as stack:
        if request.param == "cluster":
            cluster: LocalCluster = request.getfixturevalue("local_cluster")
            cluster.wait_ok()
            cluster.flush()
            url = cluster.url
        else:
            redis = RedisProcess(root / "redis", port=free_port())
            redis.start()
            stack.callback(redis.stop)
            url = redis.url
        webhook = stack.enter_context(_webhook_receiver())
        env = {
            **os.environ,
            **KEYS_ENV,
            "REDIS_URL": url,
            "VESTIBULE_DATA_DIR": str(root / "node"),
            "VESTIBULE_WEBHOOK_URL": webhook,
            "VESTIBULE_LOG_LEVEL": "warning",
        }
        output = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", "signalling.cli", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stack.callback(_stop, process)
        # The keys live in Redis: make them while the node starts.
        key = _vestibule(env, "keys", "create", "--name", "contract").split()[1]
        revoked_id, revoked_key = _vestibule(env, "keys", "create", "--name", "revoked").split()
        _vestibule(env, "keys", "revoke", revoked_id)
        base_url = f"http://127.0.0.1:{port}/api/v1"
        _wait_until_serving(process, f"{base_url}/openapi.json", log)

        document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json").json()
        # The default configuration, not a schemathesis.toml found on the way up: the checks
        # and generation this module states are the whole contract.
        schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
        api = Api(base_url, key, revoked_key, document, schema)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
            _seed(api, client)
        yield api
    errors = _ERROR_LINE.findall(log.read_text())
    assert not errors, f"the node logged errors:\n{log.read_text()}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the node did not stop on SIGTERM") from None


# --- the tests ------------------------------------------------------------------------------


def _cases(api: Api, operation: Operation, mode: GenerationMode) -> st.SearchStrategy[AnyCase]:
    """Cases of ``operation`` in ``mode``. Positive cases take a path parameter half of the
    time from the pool of ids that exist, else as generated (any string the document allows)."""
    generated = operation.as_strategy(generation_mode=mode)
    known = [
        operation.as_strategy(generation_mode=mode, path_parameters={parameter.name: value})
        for parameter in operation.path_parameters
        if parameter.name in PARAM_SOURCES
        for value in api.pools[parameter.name][-POOL_SIZE:]
    ]
    if mode is not GenerationMode.POSITIVE or not known:
        return generated
    return st.one_of(generated, st.one_of(known))


def _check(api: Api, case: AnyCase, headers: dict[str, str] | None) -> Response:
    """Send ``case`` to the node and run the contract checks on the response."""
    response = case.call(base_url=api.base_url, headers=headers, timeout=REQUEST_TIMEOUT)
    case.validate_response(response, checks=CHECKS, headers=headers)
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media_type == "application/json", f"{case.operation.label}: {media_type!r} body"
    return response


def _run(operation: Operation, mode: str, examples: int, cases: Any, test: Any) -> None:
    """Run ``test`` on ``examples`` cases drawn from ``cases``, reproducibly: the seed is the
    operation's and mode's, so each operation explores its own inputs, the same every run."""
    salt = zlib.crc32(f"{operation.label} {mode}".encode())
    seed(salt)(settings(BASE_SETTINGS, max_examples=examples)(given(case=cases)(test)))()


def _authorised(api: Api, operation: Operation, exercised: collections.Counter[str]) -> None:
    headers = api.credentials(operation)
    if _stream(api, operation) is not None:
        # A stream never ends by itself: open it, read its first event, close it.
        exercised[operation.label] += 1
        url = api.base_url + operation.path
        with httpx.stream("GET", url, headers=headers, timeout=REQUEST_TIMEOUT) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith(_stream(api, operation) or "")
            assert next(response.iter_lines()).startswith("retry:")
        return

    def test(case: AnyCase) -> None:
        exercised[operation.label] += 1
        response = _check(api, case, headers)
        with contextlib.suppress(ValueError):
            api.harvest(operation, response.status_code, response.json())

    for mode, examples in (
        (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
        (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
    ):
        _run(operation, mode.value, examples, _cases(api, operation, mode), test)


def _unauthorised(
    api: Api, operation: Operation, credential: str | None, exercised: collections.Counter[str]
) -> None:
    headers = None if credential is None else {"Authorization": credential}

    public = _public(api, operation)

    def test(case: AnyCase) -> None:
        exercised[operation.label] += 1
        if case.headers is not None:
            case.headers.pop("Authorization", None)
        response = _check(api, case, headers)
        assert (response.status_code == 401) is not public, (
            f"{operation.label} with {credential or 'no key'}: "
            f"{response.status_code} {response.content!r}"
        )

    cases = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    _run(operation, f"unauthorised {credential}", UNAUTHORISED_EXAMPLES, cases, test)


def _public(api: Api, operation: Operation) -> bool:
    """Whether the document says the operation takes no API key (``security: []``)."""
    return bool(_security(api, operation) == [])


def _security(api: Api, operation: Operation) -> Any:
    return api.document["paths"][operation.path][operation.method.lower()].get("security")


def _stream(api: Api, operation: Operation) -> str | None:
    """The media type of a streamed success response (server-sent events), if it is one."""
    declared = api.document["paths"][operation.path][operation.method.lower()]
    for response in declared["responses"].values():
        for media in response.get("content", {}):
            if media != "application/json":
                return str(media)
    return None


def test_authorised_requests_follow_the_contract(api: Api, subtests: pytest.Subtests) -> None:
    exercised: collections.Counter[str] = collections.Counter()
    for operation in api.operations():
        with subtests.test(msg=operation.label):
            _authorised(api, operation, exercised)
    assert set(exercised) == api.documented


def test_unauthorised_requests_get_401(api: Api, subtests: pytest.Subtests) -> None:
    assert any(_public(api, op) for op in api.operations())  # the booking page's
    exercised: collections.Counter[str] = collections.Counter()
    credentials = (NO_KEY, UNKNOWN_KEY, BASIC, f"Bearer {api.revoked_key}")
    for operation in api.operations():
        with subtests.test(msg=operation.label):
            for credential in credentials:
                _unauthorised(api, operation, credential, exercised)
    assert set(exercised) == api.documented
