"""A TEST STAND-IN for Confluent Schema Registry: in memory, loopback only, not for production.

This is not Confluent's software. It is a small standard-library HTTP server, bound to 127.0.0.1,
that keeps everything in memory and implements only the subset of the Schema Registry REST API
that confluent-kafka's Python ``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer``
use in this project's tests. Only AVRO schemas; no auth, TLS, modes, contexts, metadata or rule sets.

    GET    /                                          {}
    GET    /schemas/types                             ["AVRO"]
    GET    /schemas/ids/{id}                          {"schema", "references"?}
    GET    /schemas/ids/{id}/versions                 [{"subject", "version"}]   ?subject ?deleted
    GET    /schemas/ids/{id}/subjects                 [subject]                  ?subject ?deleted
    GET    /subjects                                  [subject]   ?deleted ?deleted_only ?subjectPrefix
    POST   /subjects/{subject}                        lookup -> version record   ?deleted
    DELETE /subjects/{subject}                        [version]                  ?permanent
    GET    /subjects/{subject}/versions               [version]   ?deleted ?deleted_only
    POST   /subjects/{subject}/versions               register -> {"id"}
    GET    /subjects/{subject}/versions/{v|latest}    version record             ?deleted
    DELETE /subjects/{subject}/versions/{v|latest}    version                    ?permanent
    GET|PUT        /config                            global compatibility level
    GET|PUT|DELETE /config/{subject}                  subject level              ?defaultToGlobal
    POST   /compatibility/subjects/{subject}/versions[/{v|latest}]  {"is_compatible", "messages"?} ?verbose

Like Confluent: schema ids are global and deduplicated (schemas compare as parsed JSON, so layout does
not matter); registering refuses (409) a schema incompatible under the subject's level (global default
BACKWARD); deletes are soft until ``permanent=true``; errors are ``{"error_code", "message"}`` with
Confluent's codes. Lists honour ``offset``/``limit``; ``normalize`` and ``format`` are accepted and ignored.
Run on its own with ``python -m tests.support.schema_registry --port 0``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fastavro
from fastavro.schema import SchemaParseException

from .avro_compatibility import can_read

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")
# (method, path pattern, _Registry method); "*" captures one URL-decoded path segment.
_ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("GET", (), "root"),
    ("GET", ("schemas", "types"), "schema_types"),
    ("GET", ("schemas", "ids", "*"), "schema_by_id"),
    ("GET", ("schemas", "ids", "*", "versions"), "schema_versions"),
    ("GET", ("schemas", "ids", "*", "subjects"), "schema_subjects"),
    ("GET", ("subjects",), "list_subjects"),
    ("POST", ("subjects", "*"), "lookup"),
    ("DELETE", ("subjects", "*"), "delete_subject"),
    ("GET", ("subjects", "*", "versions"), "list_versions"),
    ("POST", ("subjects", "*", "versions"), "register"),
    ("GET", ("subjects", "*", "versions", "*"), "get_version"),
    ("DELETE", ("subjects", "*", "versions", "*"), "delete_version"),
    ("GET", ("config",), "get_config"),
    ("PUT", ("config",), "put_config"),
    ("GET", ("config", "*"), "get_subject_config"),
    ("PUT", ("config", "*"), "put_subject_config"),
    ("DELETE", ("config", "*"), "delete_subject_config"),
    ("POST", ("compatibility", "subjects", "*", "versions"), "compatibility_all"),
    ("POST", ("compatibility", "subjects", "*", "versions", "*"), "compatibility_version"),
)


class ApiError(Exception):
    """An error answered as Confluent does: HTTP status plus ``{"error_code", "message"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class _Version:
    version: int
    schema_id: int
    deleted: bool = False


def _flag(query: dict[str, str], name: str) -> bool:
    # The client builds some query strings with Python's str(bool) ("True"), others via httpx ("true").
    return query.get(name, "").lower() == "true"


def _visible(versions: list[_Version], query: dict[str, str]) -> list[_Version]:
    """Versions a request sees: soft-deleted ones only with ``deleted``; only them with ``deleted_only``."""
    if _flag(query, "deleted_only"):
        return [v for v in versions if v.deleted]
    return list(versions) if _flag(query, "deleted") else [v for v in versions if not v.deleted]


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    offset, limit = int(query.get("offset") or 0), int(query.get("limit") or -1)
    return items[offset:] if limit < 0 else items[offset:offset + limit]


class _Registry:
    """The in-memory store; ``handle`` holds the lock for a whole request, so handlers run one at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.schemas: dict[int, tuple[str, list[dict[str, Any]]]] = {}  # id -> (schema string, references)
        self.ids: dict[str, int] = {}  # canonical JSON of (schema, references) -> id
        self.versions: dict[str, list[_Version]] = {}
        self.level = "BACKWARD"
        self.subject_levels: dict[str, str] = {}

    def handle(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> Any:
        allowed = False
        for route_method, pattern, name in _ROUTES:
            if len(pattern) == len(parts) and all(p in ("*", part) for p, part in zip(pattern, parts, strict=True)):
                if route_method == method:
                    args = [part for p, part in zip(pattern, parts, strict=True) if p == "*"]
                    with self.lock:
                        return getattr(self, name)(*args, query=query, body=body)
                allowed = True
        raise ApiError(405, 405, "HTTP 405 Method Not Allowed") if allowed else ApiError(404, 404, "HTTP 404 Not Found")

    # -- helpers; callers hold the lock ------------------------------------------------------------

    def _live(self, subject: str, query: dict[str, str]) -> list[_Version]:
        versions = _visible(self.versions.get(subject, []), query)
        if not versions:
            raise ApiError(404, 40401, f"Subject '{subject}' not found.")
        return versions

    def _find(self, subject: str, version: str, query: dict[str, str]) -> _Version:
        versions = self._live(subject, query)
        if version in ("latest", "-1"):
            return versions[-1]
        if not version.isdigit() or int(version) < 1:
            raise ApiError(422, 42202, f"The specified version '{version}' is not a valid version id. "
                           "Allowed values are between [1, 2^31-1] and the string \"latest\"")
        for candidate in versions:
            if candidate.version == int(version):
                return candidate
        raise ApiError(404, 40402, f"Version {version} not found.")

    def _record(self, subject: str, version: _Version) -> dict[str, Any]:
        text, references = self.schemas[version.schema_id]
        record = {"subject": subject, "version": version.version, "id": version.schema_id, "schema": text}
        return {**record, "references": references} if references else record

    def _load(self, text: str, references: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
        """Parse and validate a schema; returns it with the schemas it references, dependencies first."""
        named: list[Any] = []
        for reference in references:
            try:
                found = self._find(str(reference["subject"]), str(reference["version"]), {"deleted": "true"})
            except (ApiError, KeyError, TypeError) as error:
                raise ApiError(422, 42201, f"Invalid schema: unresolvable reference {reference!r}") from error
            dependency, its_named = self._load(*self.schemas[found.schema_id])
            named += [schema for schema in [*its_named, dependency] if schema not in named]
        try:
            schema = json.loads(text)
            repository: dict[str, Any] = {}
            for dependency in named:
                fastavro.parse_schema(dependency, named_schemas=repository)
            fastavro.parse_schema(schema, named_schemas=repository)
        except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as error:
            raise ApiError(422, 42201, f"Invalid schema: {error}") from error
        return schema, named

    def _request_schema(self, body: Any) -> tuple[str, list[dict[str, Any]], Any, list[Any], str]:
        """The posted schema as (string, references, parsed, referenced schemas, dedup key)."""
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise ApiError(422, 42201, "Invalid schema: the request needs a \"schema\" string")
        if body.get("schemaType", "AVRO") != "AVRO":
            raise ApiError(422, 42201, f"Invalid schema: this stand-in supports AVRO only, not {body['schemaType']}")
        references = list(body.get("references") or [])
        schema, named = self._load(body["schema"], references)
        key = json.dumps([schema, references], sort_keys=True, separators=(",", ":"))
        return body["schema"], references, schema, named, key

    def _incompatibilities(self, subject: str, schema: Any, named: list[Any], against: list[_Version]) -> list[str]:
        level = self.subject_levels.get(subject, self.level)
        messages: list[str] = []
        for old in against if level.endswith("_TRANSITIVE") else against[-1:]:
            old_schema, old_named = self._load(*self.schemas[old.schema_id])
            if level.startswith(("BACKWARD", "FULL")):
                messages += [f"{level}: new schema cannot read version {old.version}: {message}"
                             for message in can_read(schema, old_schema, reader_named=named, writer_named=old_named)]
            if level.startswith(("FORWARD", "FULL")):
                messages += [f"{level}: version {old.version} cannot read the new schema: {message}"
                             for message in can_read(old_schema, schema, reader_named=old_named, writer_named=named)]
        return messages

    @staticmethod
    def _level(body: Any) -> str:
        level = str((body or {}).get("compatibility") or (body or {}).get("compatibilityLevel") or "").upper()
        if level not in LEVELS:
            raise ApiError(422, 42203, f"Invalid compatibility level. Valid values are {', '.join(LEVELS)}")
        return level

    # -- endpoints -----------------------------------------------------------------------------------

    def root(self, **_: Any) -> Any:
        return {}

    def schema_types(self, **_: Any) -> Any:
        return ["AVRO"]

    def schema_by_id(self, schema_id: str, **_: Any) -> Any:
        if not schema_id.isdigit() or int(schema_id) not in self.schemas:
            raise ApiError(404, 40403, f"Schema {schema_id} not found")
        text, references = self.schemas[int(schema_id)]
        return {"schema": text, "references": references} if references else {"schema": text}

    def schema_versions(self, schema_id: str, query: dict[str, str], **_: Any) -> Any:
        self.schema_by_id(schema_id)
        pairs = [{"subject": subject, "version": v.version} for subject, versions in sorted(self.versions.items())
                 for v in _visible(versions, query)
                 if v.schema_id == int(schema_id) and query.get("subject", subject) == subject]
        return _page(pairs, query)

    def schema_subjects(self, schema_id: str, query: dict[str, str], **_: Any) -> Any:
        pairs = self.schema_versions(schema_id, {**query, "offset": "0", "limit": "-1"})
        return _page(list(dict.fromkeys(pair["subject"] for pair in pairs)), query)

    def list_subjects(self, query: dict[str, str], **_: Any) -> Any:
        prefix = query.get("subjectPrefix", "")
        names = [subject for subject, versions in sorted(self.versions.items())
                 if subject.startswith(prefix) and _visible(versions, query)]
        return _page(names, query)

    def list_versions(self, subject: str, query: dict[str, str], **_: Any) -> Any:
        return _page([v.version for v in self._live(subject, query)], query)

    def get_version(self, subject: str, version: str, query: dict[str, str], **_: Any) -> Any:
        return self._record(subject, self._find(subject, version, query))

    def lookup(self, subject: str, query: dict[str, str], body: Any, **_: Any) -> Any:
        *_unused, key = self._request_schema(body)
        for version in reversed(self._live(subject, query)):
            if version.schema_id == self.ids.get(key):
                return self._record(subject, version)
        raise ApiError(404, 40403, "Schema not found")

    def register(self, subject: str, body: Any, **_: Any) -> Any:
        text, references, schema, named, key = self._request_schema(body)
        live = [v for v in self.versions.get(subject, []) if not v.deleted]
        existing = self.ids.get(key)
        if existing is not None and any(v.schema_id == existing for v in live):
            return {"id": existing}  # already a version of this subject: no new version
        problems = self._incompatibilities(subject, schema, named, live)
        if problems:
            raise ApiError(409, 409, f"Schema being registered is incompatible with an earlier schema for subject "
                           f"\"{subject}\", details: {problems}")
        if existing is None:
            existing = self.ids[key] = len(self.schemas) + 1
            self.schemas[existing] = (text, references)
        versions = self.versions.setdefault(subject, [])
        versions.append(_Version(max((v.version for v in versions), default=0) + 1, existing))
        # Deliberately just the id (like Confluent 7): echoing "schema" back would make the client cache
        # our copy instead of its own Schema object, and then miss its cache on the next register call.
        return {"id": existing}

    def delete_subject(self, subject: str, query: dict[str, str], **_: Any) -> Any:
        if not _flag(query, "permanent"):
            doomed = self._live(subject, {})
            for version in doomed:
                version.deleted = True
            return [v.version for v in doomed]
        doomed = self._live(subject, {"deleted": "true"})
        if any(not v.deleted for v in doomed):
            raise ApiError(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted")
        del self.versions[subject]
        self.subject_levels.pop(subject, None)
        return [v.version for v in doomed]

    def delete_version(self, subject: str, version: str, query: dict[str, str], **_: Any) -> Any:
        permanent = _flag(query, "permanent")
        found = self._find(subject, version, {"deleted": "true"} if permanent else {})
        if permanent and not found.deleted:
            raise ApiError(404, 40407, f"Subject '{subject}' Version {found.version} was not deleted first "
                           "before being permanently deleted")
        if permanent:
            self.versions[subject].remove(found)
        found.deleted = True
        return found.version

    def get_config(self, **_: Any) -> Any:
        return {"compatibilityLevel": self.level}

    def put_config(self, body: Any, **_: Any) -> Any:
        self.level = self._level(body)
        return {"compatibility": self.level}

    def get_subject_config(self, subject: str, query: dict[str, str], **_: Any) -> Any:
        if subject in self.subject_levels:
            return {"compatibilityLevel": self.subject_levels[subject]}
        if _flag(query, "defaultToGlobal"):
            return {"compatibilityLevel": self.level}
        raise ApiError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")

    def put_subject_config(self, subject: str, body: Any, **_: Any) -> Any:
        self.subject_levels[subject] = self._level(body)
        return {"compatibility": self.subject_levels[subject]}

    def delete_subject_config(self, subject: str, **_: Any) -> Any:
        if subject not in self.subject_levels:
            raise ApiError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
        return {"compatibilityLevel": self.subject_levels.pop(subject)}

    def compatibility_all(self, subject: str, query: dict[str, str], body: Any, **_: Any) -> Any:
        _text, _references, schema, named, _key = self._request_schema(body)
        live = [v for v in self.versions.get(subject, []) if not v.deleted]
        return self._verdict(self._incompatibilities(subject, schema, named, live), query)

    def compatibility_version(self, subject: str, version: str, query: dict[str, str], body: Any, **_: Any) -> Any:
        _text, _references, schema, named, _key = self._request_schema(body)
        target = self._find(subject, version, {})
        return self._verdict(self._incompatibilities(subject, schema, named, [target]), query)

    @staticmethod
    def _verdict(messages: list[str], query: dict[str, str]) -> Any:
        verdict: dict[str, Any] = {"is_compatible": not messages}
        return {**verdict, "messages": messages} if _flag(query, "verbose") else verdict


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's httpx session reuses its connections
    disable_nagle_algorithm = True  # headers and body go out as two writes; do not wait ~40 ms for an ACK
    server_version = "SchemaRegistryStandIn/test-only"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: nothing on stderr per request."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        self.server.standin._count_request()
        url = urlsplit(self.path)
        # Split before decoding: the client percent-encodes "/" inside subject names.
        parts = [unquote(part) for part in url.path.split("/") if part]
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            status, payload = 200, self.server.standin._registry.handle(method, parts, query, self._body())
        except ApiError as error:
            status, payload = error.status, {"error_code": error.code, "message": str(error)}
        except Exception as error:  # noqa: BLE001 - a stand-in bug should reach the test as a 500, not a hang
            status, payload = 500, {"error_code": 50001, "message": f"stand-in error: {error!r}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not raw:
            return None
        if "json" not in self.headers.get("Content-Type", "application/json"):
            raise ApiError(415, 415, "HTTP 415 Unsupported Media Type")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ApiError(400, 400, f"Malformed JSON request body: {error}") from error


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, standin: SchemaRegistryStandIn) -> None:
        self.standin = standin
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections, whose threads would otherwise keep answering after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: only a client hanging up (or stop() hanging up on it) gets here."""


class SchemaRegistryStandIn:
    """An in-memory Confluent Schema Registry stand-in for tests, served on 127.0.0.1 by a daemon thread.

    The store lives as long as this object, across stop() and start().
    """

    #: Whether :meth:`subjects` returns the exact texts registered (yes: the first text of each id).
    keeps_schema_text = True

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._registry = _Registry()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self._request_count = 0

    def start(self, port: int | None = None) -> SchemaRegistryStandIn:
        """Bind 127.0.0.1 (port 0: a free one) and serve in the background; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the schema registry stand-in is already running")
        self._server = _Server(self._port if port is None else port, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="schema-registry-stand-in", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up on open connections and close the listening socket; idempotent."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SchemaRegistryStandIn:
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._server is None:
            raise RuntimeError("the schema registry stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for ``SchemaRegistryClient({"url": ...})``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def request_count(self) -> int:
        """HTTP requests served so far, so tests can prove a client answered from its cache."""
        with self._count_lock:
            return self._request_count

    def _count_request(self) -> None:
        with self._count_lock:
            self._request_count += 1

    def subjects(self, prefix: str = "") -> dict[str, list[str]]:
        """Each subject starting with ``prefix`` and its live (not soft-deleted) schema strings, oldest first.

        A string is the text first registered for its id, so a reformatted duplicate shows that text.
        """
        with self._registry.lock:
            return {
                subject: [self._registry.schemas[v.schema_id][0] for v in versions if not v.deleted]
                for subject, versions in sorted(self._registry.versions.items())
                if subject.startswith(prefix) and any(not v.deleted for v in versions)
            }


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, after printing one ready line with the URL."""
    parser = argparse.ArgumentParser(description="Test stand-in for Confluent Schema Registry (in memory, loopback).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Block them before the server thread exists, so it inherits the mask and only sigwait() below sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with SchemaRegistryStandIn(port=args.port) as standin:
        print(f"schema registry stand-in ready on {standin.url}", flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
