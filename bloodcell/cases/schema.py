"""The cases database: where it lives, its connection settings, and its schema, versioned with
`PRAGMA user_version` and migrated forward on opening, one step per entry of `MIGRATIONS`."""

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from bloodcell.cases.records import CaseError

BUSY_MS = 10_000  # how long a writer waits for another's transaction before giving up


def database_path() -> Path:
    """`$BLOODCELL_CASES`, else `cases.sqlite3` in the user's data folder (never the repository)."""
    configured = os.environ.get("BLOODCELL_CASES")
    if configured:
        return Path(configured).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "bloodcell" / "cases.sqlite3"


def _v1(db: sqlite3.Connection) -> None:
    """The first schema: cases, their pictures, cells with the model's answers, and decisions."""
    for statement in (
        """CREATE TABLE cases (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            revision INTEGER NOT NULL DEFAULT 1,
            version INTEGER NOT NULL DEFAULT 1,
            parent_id INTEGER REFERENCES cases(id),
            signed_by TEXT,
            signed_at TEXT
        )""",
        """CREATE TABLE pictures (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL REFERENCES cases(id),
            file TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('cell', 'field')),
            data BLOB NOT NULL,
            platelets INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE cells (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL REFERENCES cases(id),
            picture_id INTEGER NOT NULL REFERENCES pictures(id),
            position INTEGER NOT NULL,
            file TEXT NOT NULL,
            box TEXT,
            crop BLOB,
            run_id TEXT NOT NULL,
            model_label TEXT NOT NULL,
            probabilities TEXT NOT NULL,
            status TEXT NOT NULL
        )""",
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL REFERENCES cases(id),
            cell_id INTEGER REFERENCES cells(id),
            action TEXT NOT NULL,
            label TEXT,
            reviewer TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX cells_of_case ON cells(case_id, position)",
        "CREATE INDEX decisions_of_case ON decisions(case_id, id)",
    ):
        db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    """The model's version beside its run id (the model file's checksum: a run's model can be
    retrained under the same id), and the decision log made append-only in the database itself."""
    db.execute("ALTER TABLE cells ADD COLUMN model_version TEXT")
    for change in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER decisions_append_only_{change.lower()} BEFORE {change} ON decisions "
            "BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END"
        )


# Schema version n is what MIGRATIONS[:n] make; a database is brought forward one step at a time.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    """An open connection to the cases database (created and migrated where needed), in WAL mode,
    autocommitting outside the explicit transactions of `_writing`."""
    path = Path(path) if path is not None else database_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_MS / 1000)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # a saved case survives a power cut, not only a kill
        migrate(db, path)
    except sqlite3.DatabaseError as error:
        raise CaseError(
            f"The cases database {path} cannot be opened ({error}). Check that it is a bloodcell "
            "cases database and the folder is writable, or set BLOODCELL_CASES to another file."
        ) from error
    except OSError as error:
        raise CaseError(
            f"Cannot create the cases database at {path}: {error.strerror}. "
            "Set BLOODCELL_CASES to a writable file."
        ) from error
    return db


def migrate(db: sqlite3.Connection, path: Path | str = "the cases database") -> int:
    """Bring the schema to `SCHEMA_VERSION`, each step in its own transaction; the version reached.
    A database made by a newer bloodcell is refused rather than misread."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise CaseError(
            f"{path} was written by a newer bloodcell (schema version {found}; this one reads up to "
            f"{SCHEMA_VERSION}). Update bloodcell, or set BLOODCELL_CASES to another file."
        )
    for version in range(found, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated it while this one waited for the lock
            if db.execute("PRAGMA user_version").fetchone()[0] == version:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
