"""Opening a replica database: file mode, pragmas, migrations, and the one-writer lock."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from replica.errors import DatabaseError, DatabaseLockedError
from replica.iso_time import now_iso

log = logging.getLogger(__name__)

#: How long a connection waits for a lock held by another before failing.
BUSY_TIMEOUT_MS = 10_000

_MIGRATION_TABLE = "_replica_migrations"


def _schema_dir() -> Path:
    # Next to the package in a source checkout; inside it (replica/_schema) when installed.
    here = Path(__file__).resolve().parent.parent
    checkout = here.parent / "schema"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("replica") / "_schema"))


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file `schema/NNN_name.sql`, in order."""
    found = []
    for path in sorted(_schema_dir().glob("[0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:3]), path.stem[4:], path.read_text()))
    return found


def create_private_file(path: Path) -> None:
    """Create an empty database file readable by its owner only (tokens never go in it,
    but run payloads may be private)."""
    if path.exists():
        return
    try:
        # A missing directory is refused, never made: it is most often a typo in the path,
        # and an empty replica there would quietly answer every query with nothing.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise file_error(path, exc) from None


def file_error(path: Path, exc: OSError) -> DatabaseError:
    """A DatabaseError saying why a file next to (or of) the database cannot be made."""
    directory = path.absolute().parent
    if isinstance(exc, FileNotFoundError):
        return DatabaseError(
            f"cannot create {path}: the directory {directory} does not exist",
            hint="create it first, or use another path",
            cli_hint="create it first, or pass another --db",
        )
    if isinstance(exc, PermissionError):
        return DatabaseError(
            f"cannot create {path}: {directory} is not writable by this user",
            hint="use a directory you can write to, or fix its permissions",
        )
    return DatabaseError(f"cannot create {path}: {exc.strerror or exc}")


def sqlite_uri(path: str | Path, **params: str) -> str:
    """A `file:` URI for `path` with query parameters (e.g. `mode="ro"`).

    The path is percent-encoded: a `?`, `#` or `%` in it would otherwise be read as the
    start of the parameters, a fragment or an escape, and open another file (read-write).
    """
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"file:{quote(os.fspath(path))}" + (f"?{query}" if query else "")


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with replica's pragmas."""
    path = Path(path)
    try:
        if readonly:
            if not path.exists():
                raise DatabaseError(f"database {path} does not exist")
            if not os.access(path, os.R_OK):
                raise DatabaseError(
                    f"database {path} is not readable by this user",
                    hint="read it as the user that owns it (replica creates it with mode 0600)",
                )
            conn = sqlite3.connect(
                sqlite_uri(path, mode="ro"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            _check_readable(conn, path)
        else:
            create_private_file(path)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, cached_statements=512
            )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: could not switch to WAL mode (got %s)", path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            # Temporary sorts and statement journals (a snapshot's publish makes big ones) go
            # to temporary files, not to this process's memory: a 100k-run publish held
            # ~45 MB more with temp_store = MEMORY, for no measurable speed.
            conn.execute("PRAGMA temp_store = FILE")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            # Publishing a snapshot inserts into B-trees keyed by random ids (runs.id,
            # run_tags, run_history): with the default 2 MB page cache they thrash and spill
            # dirty pages mid-transaction. 8 MB (used only as a database grows): a 100k-run
            # sync 16.2-17.5 s -> 14.2-14.3 s. 16 MB was no faster (300k runs: 50.6-51.0 s
            # against 48.2-48.5 s) for 8 MB more peak RSS; 64 MB: 65 MB more.
            conn.execute("PRAGMA cache_size = -8192")
        conn.execute("PRAGMA foreign_keys = OFF")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    return conn


def _check_readable(conn: sqlite3.Connection, path: Path) -> None:
    """Read the schema now, so that a database this user cannot read fails here, clearly,
    rather than as a puzzling error from the first query."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        text = str(exc)
        if "readonly" in text or "unable to open" in text:
            # A WAL database can only be read with its -shm file, which this user can
            # neither open nor create beside it.
            raise DatabaseError(
                f"cannot read {path}: SQLite needs {path.name}-shm beside it (the database "
                f"is in WAL mode), and this user cannot create or open it in "
                f"{path.absolute().parent}",
                hint="read it as the user that owns it (or one that can write its "
                "directory), or copy it with its -wal file to a directory you can write",
            ) from None
        raise DatabaseError(f"cannot read {path}: {text}") from None


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each in its own transaction; return the schema version."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_MIGRATION_TABLE} "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.execute(f"SELECT version FROM {_MIGRATION_TABLE}")}
    version = max(done, default=0)
    for number, name, sql in migrations():
        if number in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have just migrated.
            if conn.execute(
                f"SELECT 1 FROM {_MIGRATION_TABLE} WHERE version = ?", (number,)
            ).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {_MIGRATION_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (number, name, now_iso()),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise DatabaseError(f"migration {number:03d}_{name} failed: {exc}") from exc
        log.info("applied schema migration %03d_%s", number, name)
        version = number
    return version


def schema_version(conn: sqlite3.Connection) -> int:
    """The version of the newest applied migration (0 for a database replica never opened)."""
    try:
        row = conn.execute(f"SELECT max(version) FROM {_MIGRATION_TABLE}").fetchone()
    except sqlite3.OperationalError:
        return 0
    return row[0] or 0


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (trigger bodies contain semicolons)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        statements.append(buffer.strip())
    return statements


class WriterLock:
    """An exclusive advisory lock on `<db>.lock`: one writer per database file.

    Released by the OS when the process dies, so a killed writer never blocks the next.
    """

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            log.warning("no file locking on this platform; run one writer per database")
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise file_error(self.path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DatabaseLockedError(
                    f"another replica process (pid {holder}) is already writing to "
                    f"{str(self.path)[: -len('.lock')]}",
                    hint="stop it first, or sync into another file",
                    cli_hint="stop it first, or sync into another file with --db",
                ) from None
            # The previous holder removes the file when it lets go; if we locked a file that
            # was just removed, someone else may hold the new one: start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    @staticmethod
    def holder(db_path: str | Path) -> int | None:
        """The pid of the process writing `db_path` now, or None if nobody is."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return None
        try:
            fd = os.open(f"{db_path}.lock", os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # while still holding it (see acquire)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
