"""The on-disk response cache: one SQLite file that makes every run resumable.

Why SQLite: one file, atomic commits, WAL lets readers and a writer (and two runs sharing
the file) proceed together, and a SIGKILL loses nothing that was committed. Every answer
is committed before `Engine.chat` returns it, so a killed run re-run repeats only the calls
that were in flight.

* Key: ``"b2:" + blake2b(canonical JSON)`` of the profile, protocol, base URL, model and
  every `ChatRequest` field except ``tag``. Canonical means orjson with sorted keys, so
  the same request always hashes the same; the ``b2:`` prefix names the algorithm so a
  later change of scheme is detectable. The API key is never part of it.
* Value: the normalised `ChatResponse` JSON without ``ratelimit`` (headers of one moment)
  and without ``cached``.
* Schema changes are numbered migrations recorded in ``schema_migrations``; migration 2
  creates the ``batches`` / ``batch_requests`` tables that batch mode records its
  submitted batches in, so an interrupted run resumes polling rather than paying twice;
  migration 3 keeps each batched request's JSON until its batch is collected, so a resumed
  batch's answers can be decoded and cached even for requests the re-run does not ask for.
* The file is created 0600 (SQLite gives its ``-wal``/``-shm`` files the same mode) in a
  0700 folder: responses can quote private data.

SQLite calls are blocking, so they run on one private worker thread with their own
connection; the event loop never waits on a lock held by another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from clearapi.errors import ConfigError
from clearapi.records import ChatRequest, ChatResponse

__all__ = ["BatchStore", "PendingRequest", "ResponseCache", "cache_key", "cache_stats", "clear_cache", "default_cache_path", "immediate", "open_db"]

T = TypeVar("T")
V = TypeVar("V")
R = TypeVar("R")
#: keys per ``IN (...)`` lookup, well under SQLite's bound on host parameters
_KEYS_PER_QUERY = 500

KEY_PREFIX = "b2:"
BUSY_TIMEOUT_MS = 30_000
_IN_CHUNK = 500  # SQLite host parameters per IN (...) query

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            response BLOB NOT NULL,
            provider TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE INDEX responses_created_at ON responses(created_at);
    """),
    (2, """
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,              -- the provider's batch id
            provider TEXT NOT NULL,
            base_url TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,             -- submitted / in_progress / ended / failed / collected
            input_file_id TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            request_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            detail BLOB                       -- provider JSON, for debugging
        );
        CREATE TABLE batch_requests (
            batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL,
            key TEXT NOT NULL,                -- the response cache key the answer is stored under
            status TEXT NOT NULL DEFAULT 'pending',
            PRIMARY KEY (batch_id, custom_id)
        );
        CREATE INDEX batch_requests_key ON batch_requests(key);
    """),
    # the ChatRequest JSON, until collected. (No SQL comment inside an ALTER TABLE ADD
    # COLUMN: SQLite splices the text into the stored CREATE TABLE, where a trailing
    # "--" comment swallows the closing parenthesis and corrupts the schema.)
    (3, """
        ALTER TABLE batch_requests ADD COLUMN request BLOB
    """),
]


def default_cache_path() -> Path:
    """``$CLEARAPI_CACHE`` if set, else ``~/.cache/clearapi/cache.sqlite``."""
    env = os.environ.get("CLEARAPI_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "clearapi" / "cache.sqlite"


#: bumped per mode when what a response holds changes, so an old entry is a miss rather than
#: a silently poorer answer (score responses gained `Choice.end_logprob` in 2)
KEY_VERSIONS: dict[str, int] = {"generate": 1, "score": 2}


def cache_key(request: ChatRequest, *, profile: str, protocol: str, base_url: str | None,
              model: str) -> str:
    """The content address of a request. `model` is the effective model (request or default)."""
    fields = request.model_dump(mode="json", exclude={"tag"})
    fields["model"] = request.model or model
    canonical = orjson.dumps(
        {"v": KEY_VERSIONS[request.mode], "profile": profile, "protocol": protocol, "base_url": base_url or "", "request": fields},
        option=orjson.OPT_SORT_KEYS,
    )
    return KEY_PREFIX + hashlib.blake2b(canonical, digest_size=32).hexdigest()


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)  # in case a umask stripped nothing but a platform widened it


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if needed) and migrate the cache database."""
    try:
        _create_private(path)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the response cache at {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _wal(conn)
        if str(mode).lower() != "wal":
            raise ConfigError(f"the response cache at {path} cannot use WAL mode (got {mode})")
        # WAL + NORMAL: a commit survives the process being killed; only power loss can
        # drop the last few, which costs a repeated call, never a corrupt file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable clearapi cache: {exc}") from exc
    return conn


def _wal(conn: sqlite3.Connection) -> object:
    """Switch to WAL (persistent in the file). The switch needs a lock SQLite does not wait for
    through busy_timeout, so processes opening a new file at once (Ray workers) wait here, on the
    cache's own thread, until the first one's switch is done."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    for version, sql in MIGRATIONS:
        if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
            continue
        with immediate(conn):  # two processes opening a new file: one migrates
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                continue
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                         (version, time.time()))


class _Trips(Generic[V, R]):
    """Requests that arrive while a trip to the cache thread is under way go on the next trip
    together: one thread hop and one statement or transaction for all of them.

    `submit` returns only when the trip that carried its key has finished, with that
    key's result (or the trip's exception), so callers see no difference from one trip each.
    """

    def __init__(self, trip: Callable[[dict[str, V]], Awaitable[dict[str, R]]]) -> None:
        self._trip = trip
        self._values: dict[str, V] = {}
        self._futures: dict[str, asyncio.Future[R | None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def submit(self, key: str, value: V) -> R | None:
        fut = self._futures.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_retrieve)
            self._futures[key] = fut
        self._values[key] = value  # the same key twice before its trip: the last value goes
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        futures: dict[str, asyncio.Future[R | None]] = {}
        try:
            while self._futures:
                values, futures = self._values, self._futures
                self._values, self._futures = {}, {}
                try:
                    results = await self._trip(values)
                except Exception as exc:
                    for fut in futures.values():
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for key, fut in futures.items():
                        if not fut.done():
                            fut.set_result(results.get(key))
        finally:
            self._task = None
            for fut in (*futures.values(), *self._futures.values()):  # cancelled mid-trip
                fut.cancel()

    async def settle(self) -> None:
        """Wait for the trips under way and those queued behind them."""
        while self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self._task)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # a caller cancelled while its trip failed would otherwise log "exception never retrieved"
    if not fut.cancelled():
        fut.exception()


class ResponseCache:
    """Async access to the cache file; every method runs on the cache's own thread.

    Lookups and answers that arrive while the thread is busy are coalesced (`_Trips`): one
    query finds every waiting key, one transaction commits every waiting answer. A hosted
    run reads and stores hundreds of answers a second, and a thread hop and a commit each
    were about a tenth of its CPU. `put` still returns only once its answer is committed, so
    a killed run loses nothing it was told is stored.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearapi-cache")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._reads: _Trips[None, bytes] = _Trips(self._read_many)
        self._writes: _Trips[tuple[object, ...], None] = _Trips(self._write_many)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_db(self.path)
        return self._conn

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("the response cache is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` with the cache's connection on its thread (for `BatchStore`)."""
        return await self._run(lambda: fn(self._db()))

    async def open(self) -> None:
        """Open and migrate now, so a bad path fails before the first call."""
        await self._run(self._db)

    async def get(self, key: str) -> ChatResponse | None:
        blob = await self._reads.submit(key, None)
        if blob is None:
            return None
        try:
            response = ChatResponse.model_validate_json(blob)
        except ValueError:
            return None  # written by an incompatible version: treat as a miss, overwrite later
        response.cached = True
        return response

    async def put(self, key: str, response: ChatResponse) -> None:
        blob = response.model_dump_json(exclude={"ratelimit", "cached"}).encode()
        await self._writes.submit(key, (key, blob, response.provider, response.model,
                                        response.usage.prompt_tokens, response.usage.completion_tokens,
                                        time.time()))

    async def _read_many(self, keys: dict[str, None]) -> dict[str, bytes]:
        def read() -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            listed = list(keys)
            for i in range(0, len(listed), _KEYS_PER_QUERY):
                part = listed[i:i + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(part))
                for key, blob in self._db().execute(
                        f"SELECT key, response FROM responses WHERE key IN ({marks})", part):
                    found[key] = bytes(blob)
            return found

        return await self._run(read)

    async def _write_many(self, rows: dict[str, tuple[object, ...]]) -> dict[str, None]:
        def write() -> None:
            conn = self._db()
            with immediate(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO responses (key, response, provider, model, prompt_tokens,"
                    " completion_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows.values())

        await self._run(write)
        return {}

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._writes.settle()  # answers already handed to put are committed first
        await self._reads.settle()
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)


def cache_stats(path: Path) -> dict[str, Any]:
    """What `clearapi cache stats` prints: sizes, counts, schema version."""
    conn = open_db(path)
    try:
        entries, first, last, ptok, ctok = conn.execute(
            "SELECT COUNT(*), MIN(created_at), MAX(created_at), COALESCE(SUM(prompt_tokens), 0),"
            " COALESCE(SUM(completion_tokens), 0) FROM responses").fetchone()
        by_model = conn.execute(
            "SELECT provider, model, COUNT(*) FROM responses GROUP BY provider, model ORDER BY 3 DESC"
        ).fetchall()
        version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        batches = conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return {
        "path": str(path),
        "bytes": size,
        "entries": entries,
        "prompt_tokens": ptok,
        "completion_tokens": ctok,
        "oldest": first,
        "newest": last,
        "by_model": [{"provider": p, "model": m, "entries": n} for p, m, n in by_model],
        "batches": batches,
        "schema_version": version,
    }


def clear_cache(path: Path, *, older_than_s: float | None = None) -> int:
    """Delete cached responses (all, or those older than `older_than_s`); returns how many."""
    conn = open_db(path)
    try:
        if older_than_s is None:
            n = conn.execute("DELETE FROM responses").rowcount
        else:
            n = conn.execute("DELETE FROM responses WHERE created_at < ?",
                             (time.time() - older_than_s,)).rowcount
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return int(n)


# --- batch records (batch mode, `clearapi.engine.batch`): tables of migrations 2 and 3 ---------


@dataclass(frozen=True)
class PendingRequest:
    custom_id: str
    key: str
    request: ChatRequest


class BatchStore:
    """The ``batches`` / ``batch_requests`` tables of the cache file.

    They run on the response cache's own thread and connection, so the event loop never
    waits on SQLite and the cache closes them with its file.
    """

    def __init__(self, cache: ResponseCache) -> None:
        self._run = cache.run

    async def open_batches(self, keys: Iterable[str], *, provider: str, base_url: str) -> dict[str, set[str]]:
        """Batches not yet collected that hold any of `keys`: batch id -> those keys."""
        wanted = list(keys)

        def read(db: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for i in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[i:i + _IN_CHUNK]
                rows = db.execute(
                    "SELECT r.batch_id, r.key FROM batch_requests r JOIN batches b ON b.id = r.batch_id"
                    " WHERE b.status != 'collected' AND b.provider = ? AND b.base_url = ?"
                    f" AND r.key IN ({','.join('?' * len(chunk))})", (provider, base_url, *chunk)).fetchall()
                for batch_id, key in rows:
                    out.setdefault(str(batch_id), set()).add(str(key))
            return out

        return await self._run(read)

    async def record(self, batch_id: str, input_file_id: str | None, members: Sequence[PendingRequest], *,
                     provider: str, base_url: str, model: str) -> None:
        """Remember a submitted batch before anything else happens to it."""
        now = time.time()
        rows = [(batch_id, p.custom_id, p.key, p.request.model_dump_json().encode()) for p in members]

        def write(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.execute("INSERT OR REPLACE INTO batches (id, provider, base_url, model, status, input_file_id,"
                           " request_count, created_at, updated_at) VALUES (?, ?, ?, ?, 'submitted', ?, ?, ?, ?)",
                           (batch_id, provider, base_url, model, input_file_id, len(rows), now, now))
                db.executemany("INSERT OR REPLACE INTO batch_requests (batch_id, custom_id, key, request)"
                               " VALUES (?, ?, ?, ?)", rows)

        await self._run(write)

    async def members(self, batch_id: str) -> list[PendingRequest]:
        def read(db: sqlite3.Connection) -> list[tuple[str, str, bytes | None]]:
            return db.execute("SELECT custom_id, key, request FROM batch_requests WHERE batch_id = ?",
                              (batch_id,)).fetchall()

        out: list[PendingRequest] = []
        for cid, key, blob in await self._run(read):
            if blob is None:
                continue
            try:
                out.append(PendingRequest(str(cid), str(key), ChatRequest.model_validate_json(blob)))
            except ValueError:
                continue  # written by an incompatible version: that answer is not cached
        return out

    async def set_status(self, batch_id: str, status: str, *, output_file_id: str | None = None,
                         error_file_id: str | None = None) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE batches SET status = ?, output_file_id = COALESCE(?, output_file_id),"
                " error_file_id = COALESCE(?, error_file_id), updated_at = ? WHERE id = ?",
                (status, output_file_id, error_file_id, time.time(), batch_id))

        await self._run(write)

    async def collected(self, batch_id: str, statuses: Mapping[str, str]) -> None:
        """The batch's results are in the response cache (or retried): mark it, drop request copies."""
        def write(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.executemany("UPDATE batch_requests SET status = ?, request = NULL"
                               " WHERE batch_id = ? AND custom_id = ?",
                               [(s, batch_id, cid) for cid, s in statuses.items()])
                db.execute("UPDATE batch_requests SET request = NULL WHERE batch_id = ?", (batch_id,))
                db.execute("UPDATE batches SET status = 'collected', updated_at = ? WHERE id = ?",
                           (time.time(), batch_id))

        await self._run(write)
