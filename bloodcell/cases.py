"""Cases: one sample's cells, the model's answers and every reviewer's decision, kept in SQLite.

A case is named by a sample name or number, never a patient's identity. Its pictures are stored
in the database (a field's cells as crops), so a case outlives the upload. Every human decision
is appended to a log that cannot be changed afterwards; a signed case is read-only, and a new
version of it can be started. Concurrent writers are told, never silently overwritten: each
change names the case revision it was based on and is refused when that revision is stale.

The database lives at `$BLOODCELL_CASES`, by default in the user's data folder; its schema is
versioned (`PRAGMA user_version`) and migrated forward on opening, one step per entry of
`MIGRATIONS`.
"""

import io
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bloodcell.classes import CLASSES, DISPLAY_NAMES

NOT_A_CELL = "unusable"
LABELS: tuple[str, ...] = (*CLASSES, NOT_A_CELL)
LABEL_NAMES: dict[str, str] = DISPLAY_NAMES | {NOT_A_CELL: "Not a cell / unusable"}
MAX_NAME = 80
# A field's cell is kept as a square crop around its box, this much wider on each side, so the
# picture shows the cell's surroundings as the finder framed it.
CROP_MARGIN = 0.25
BUSY_MS = 10_000  # how long a writer waits for another's transaction before giving up


class CaseError(ValueError):
    """A case that cannot be read or changed as asked; the message says why and what to do."""


class StaleCase(CaseError):
    """A change based on a revision of the case that another writer has since replaced."""


class SignedCase(CaseError):
    """A change asked of a signed (read-only) case."""


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


@dataclass(frozen=True)
class NewCell:
    """A cell to save: the model's answer, and for a field's cell its box and cropped picture."""

    file: str
    run_id: str
    model_version: str | None
    model_label: str
    probabilities: dict[str, float]
    status: str
    box: tuple[int, int, int, int] | None = None
    crop: bytes | None = None


@dataclass(frozen=True)
class NewPicture:
    """An uploaded picture to save with its cells (one for a single cell's picture)."""

    file: str
    data: bytes
    kind: str
    cells: tuple[NewCell, ...]
    platelets: int = 0


@dataclass(frozen=True)
class Cell:
    """A cell of a case: the model's answer and its current label (the last decision, else the
    model's class)."""

    id: int
    number: int
    picture_id: int
    file: str
    box: tuple[int, int, int, int] | None
    run_id: str
    model_version: str | None
    model_label: str
    probabilities: dict[str, float]
    status: str
    label: str
    decided_by: str | None = None
    decided_at: str | None = None

    @property
    def changed(self) -> bool:
        """Whether a reviewer changed the model's class."""
        return self.label != self.model_label

    @property
    def to_check(self) -> bool:
        """Held for review by the model (unsure, or unlike its training pictures) and not yet
        decided by a person."""
        return self.status != "confident" and self.decided_by is None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "number": self.number,
            "file": self.file,
            "box": list(self.box) if self.box else None,
            "run": self.run_id,
            "model_version": self.model_version,
            "model_label": self.model_label,
            "probabilities": self.probabilities,
            "status": self.status,
            "label": self.label,
            "changed": self.changed,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
        }


@dataclass(frozen=True)
class Decision:
    """One entry of a case's log: a cell labelled, or the case signed, by whom and when."""

    id: int
    cell_id: int | None
    action: str
    label: str | None
    reviewer: str
    at: str

    def as_dict(self) -> dict:
        return {
            "cell": self.cell_id,
            "action": self.action,
            "label": self.label,
            "reviewer": self.reviewer,
            "at": self.at,
        }


@dataclass(frozen=True)
class Case:
    """A case as stored: its cells in order, its decision log, and its revision (what a change
    must name to be accepted)."""

    id: int
    name: str
    created: str
    updated: str
    revision: int
    version: int
    parent_id: int | None
    signed_by: str | None
    signed_at: str | None
    cells: tuple[Cell, ...] = ()
    decisions: tuple[Decision, ...] = ()
    field_platelets: int = 0

    @property
    def signed(self) -> bool:
        return self.signed_at is not None

    def counts(self) -> dict[str, int]:
        """Current label -> number of cells, in `LABELS` order, labels without cells left out."""
        found = Counter(cell.label for cell in self.cells)
        return {label: found[label] for label in LABELS if found[label]}

    def cell(self, cell_id: int) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise CaseError(f"Case {self.id} has no cell {cell_id}.")

    def summary(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "parent": self.parent_id,
            "revision": self.revision,
            "created": self.created,
            "updated": self.updated,
            "signed_by": self.signed_by,
            "signed_at": self.signed_at,
            "cells": len(self.cells),
        }

    def as_dict(self) -> dict:
        return self.summary() | {
            "field_platelets": self.field_platelets,
            "counts": self.counts(),
            "cells": [cell.as_dict() for cell in self.cells],
            "decisions": [d.as_dict() for d in self.decisions],
        }


def now() -> str:
    """The current time in UTC, to the second, as ISO 8601."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def check_name(name: str) -> str:
    """A sample name or number, stripped; refused (with the reason) when empty or too long."""
    name = " ".join(str(name).split())
    if not name:
        raise CaseError("Give the case a sample name or number (never a patient's name or identity).")
    if len(name) > MAX_NAME:
        raise CaseError(f"A sample name has at most {MAX_NAME} characters; this one has {len(name)}.")
    return name


def check_reviewer(reviewer: str) -> str:
    reviewer = " ".join(str(reviewer).split())
    if not reviewer:
        raise CaseError("Type your name or initials first: every decision is logged with who made it.")
    if len(reviewer) > MAX_NAME:
        raise CaseError(f"A reviewer's name has at most {MAX_NAME} characters.")
    return reviewer


def check_label(label: str) -> str:
    if label not in LABELS:
        raise CaseError(f"'{label}' is not a label of a cell; use one of: {', '.join(LABELS)}.")
    return label


class Store:
    """The cases database at `path` (default `database_path()`). Every method opens its own
    connection, so one Store serves many threads (Streamlit's sessions); every change is one
    transaction: a killed process leaves it wholly done or not at all."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else database_path()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        db = connect(self.path)
        try:
            db.execute("BEGIN")  # one snapshot for every read of the call
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        db = connect(self.path)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as error:
            raise CaseError(
                f"The cases database {self.path} is busy or cannot be written ({error}); try again."
            ) from error
        finally:
            db.close()

    def create(self, name: str, pictures: list[NewPicture]) -> int:
        """Save a new case of `pictures` in one transaction; its id."""
        name = check_name(name)
        if not any(p.cells for p in pictures):
            raise CaseError("There is no cell to save: no usable picture held a cell.")
        for picture in pictures:
            for cell in picture.cells:
                check_label(cell.model_label)
        with self._writing() as db:
            stamp = now()
            case_id = db.execute(
                "INSERT INTO cases (name, created, updated) VALUES (?, ?, ?)", (name, stamp, stamp)
            ).lastrowid
            self._insert(db, case_id, pictures)
            return case_id

    def _insert(self, db: sqlite3.Connection, case_id: int, pictures: list[NewPicture]) -> None:
        position = 0
        for picture in pictures:
            picture_id = db.execute(
                "INSERT INTO pictures (case_id, file, kind, data, platelets) VALUES (?, ?, ?, ?, ?)",
                (case_id, picture.file, picture.kind, picture.data, picture.platelets),
            ).lastrowid
            for cell in picture.cells:
                position += 1
                db.execute(
                    "INSERT INTO cells (case_id, picture_id, position, file, box, crop, run_id, "
                    "model_version, model_label, probabilities, status) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        case_id,
                        picture_id,
                        position,
                        cell.file,
                        json.dumps(list(cell.box)) if cell.box else None,
                        cell.crop,
                        cell.run_id,
                        cell.model_version,
                        cell.model_label,
                        json.dumps(cell.probabilities),
                        cell.status,
                    ),
                )
        return case_id

    def summaries(self) -> list[dict]:
        """Every case's summary (`Case.summary`), the newest first; no database file, no cases."""
        if not self.path.exists():
            return []
        with self._reading() as db:
            rows = db.execute(
                "SELECT c.*, (SELECT COUNT(*) FROM cells WHERE case_id = c.id) AS n FROM cases c "
                "ORDER BY c.id DESC"
            ).fetchall()
        return [_case(row, ()).summary() | {"cells": row["n"]} for row in rows]

    def get(self, case_id: int) -> Case:
        """The case `case_id` with its cells and decision log."""
        with self._reading() as db:
            return self._get(db, case_id)

    def _get(self, db: sqlite3.Connection, case_id: int) -> Case:
        row = db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise CaseError(f"There is no case {case_id} in {self.path}; `cases list` shows the cases.")
        decisions = tuple(
            Decision(d["id"], d["cell_id"], d["action"], d["label"], d["reviewer"], d["at"])
            for d in db.execute("SELECT * FROM decisions WHERE case_id = ? ORDER BY id", (case_id,))
        )
        last = {d.cell_id: d for d in decisions if d.action == "label"}
        cells = []
        for c in db.execute(
            "SELECT id, position, picture_id, file, box, run_id, model_version, model_label, "
            "probabilities, status FROM cells WHERE case_id = ? ORDER BY position",
            (case_id,),
        ):
            decided = last.get(c["id"])
            cells.append(
                Cell(
                    c["id"],
                    c["position"],
                    c["picture_id"],
                    c["file"],
                    tuple(json.loads(c["box"])) if c["box"] else None,
                    c["run_id"],
                    c["model_version"],
                    c["model_label"],
                    json.loads(c["probabilities"]),
                    c["status"],
                    decided.label if decided else c["model_label"],
                    decided.reviewer if decided else None,
                    decided.at if decided else None,
                )
            )
        platelets = db.execute(
            "SELECT COALESCE(SUM(platelets), 0) FROM pictures WHERE case_id = ?", (case_id,)
        ).fetchone()[0]
        return _case(row, tuple(cells), decisions, platelets)

    def _changing(self, db: sqlite3.Connection, case_id: int, revision: int) -> Case:
        """The case, checked to be unsigned and still at `revision`, inside a write transaction."""
        case = self._get(db, case_id)
        if case.signed:
            raise SignedCase(
                f"Case {case_id} was signed by {case.signed_by} at {case.signed_at} and is read-only; "
                "start a new version of it to make changes."
            )
        if case.revision != revision:
            raise StaleCase(
                f"Case {case_id} was changed by someone else since you opened it (it is now at "
                f"revision {case.revision}, you had revision {revision}); your change was not saved. "
                "Look at the case again as it is now, then make your change."
            )
        return case

    def _bump(self, db: sqlite3.Connection, case_id: int, stamp: str) -> None:
        db.execute("UPDATE cases SET revision = revision + 1, updated = ? WHERE id = ?", (stamp, case_id))

    def decide(self, case_id: int, cell_id: int, label: str, reviewer: str, revision: int) -> Case:
        """Label cell `cell_id` as `label` (one of `LABELS`; the model's own class confirms it),
        logged with `reviewer` and the time; refused on a signed case or a stale `revision`.
        The case as it is afterwards."""
        label, reviewer = check_label(label), check_reviewer(reviewer)
        with self._writing() as db:
            self._changing(db, case_id, revision).cell(cell_id)
            stamp = now()
            db.execute(
                "INSERT INTO decisions (case_id, cell_id, action, label, reviewer, at) "
                "VALUES (?, ?, 'label', ?, ?, ?)",
                (case_id, cell_id, label, reviewer, stamp),
            )
            self._bump(db, case_id, stamp)
            return self._get(db, case_id)

    def sign(self, case_id: int, reviewer: str, revision: int) -> Case:
        """Sign the case as `reviewer`: its labels become the reviewed result, read-only."""
        reviewer = check_reviewer(reviewer)
        with self._writing() as db:
            case = self._changing(db, case_id, revision)
            if not case.cells:
                raise CaseError(f"Case {case_id} has no cells to sign.")
            stamp = now()
            db.execute(
                "INSERT INTO decisions (case_id, action, reviewer, at) VALUES (?, 'sign', ?, ?)",
                (case_id, reviewer, stamp),
            )
            db.execute(
                "UPDATE cases SET signed_by = ?, signed_at = ? WHERE id = ?", (reviewer, stamp, case_id)
            )
            self._bump(db, case_id, stamp)
            return self._get(db, case_id)

    def new_version(self, case_id: int, reviewer: str) -> int:
        """Start a new, unsigned version of signed case `case_id`: the same pictures, cells and
        model answers, its labels as the reviewers left them (their decisions carried over as
        logged); the new case's id."""
        reviewer = check_reviewer(reviewer)
        with self._writing() as db:
            case = self._get(db, case_id)
            if not case.signed:
                raise CaseError(f"Case {case_id} is not signed: change it directly, no new version needed.")
            pictures = db.execute(
                "SELECT * FROM pictures WHERE case_id = ? ORDER BY id", (case_id,)
            ).fetchall()
            new_id = db.execute(
                "INSERT INTO cases (name, created, updated, version, parent_id) VALUES (?, ?, ?, ?, ?)",
                (case.name, now(), now(), case.version + 1, case_id),
            ).lastrowid
            cell_ids = {}
            for picture in pictures:
                picture_id = db.execute(
                    "INSERT INTO pictures (case_id, file, kind, data, platelets) VALUES (?, ?, ?, ?, ?)",
                    (new_id, picture["file"], picture["kind"], picture["data"], picture["platelets"]),
                ).lastrowid
                for cell in db.execute(
                    "SELECT * FROM cells WHERE picture_id = ? ORDER BY position", (picture["id"],)
                ).fetchall():
                    cell_ids[cell["id"]] = db.execute(
                        "INSERT INTO cells (case_id, picture_id, position, file, box, crop, run_id, "
                        "model_version, model_label, probabilities, status) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (new_id, picture_id, *(cell[k] for k in _CELL_COPIED)),
                    ).lastrowid
            for d in case.decisions:
                if d.action == "label":
                    db.execute(
                        "INSERT INTO decisions (case_id, cell_id, action, label, reviewer, at) "
                        "VALUES (?, ?, 'label', ?, ?, ?)",
                        (new_id, cell_ids[d.cell_id], d.label, d.reviewer, d.at),
                    )
            db.execute(
                "INSERT INTO decisions (case_id, action, label, reviewer, at) "
                "VALUES (?, 'new version', ?, ?, ?)",
                (new_id, f"from case {case_id}", reviewer, now()),
            )
            return new_id

    def picture(self, cell_id: int) -> bytes:
        """The picture of a cell as stored: its own upload, or its crop of a field."""
        with self._reading() as db:
            row = db.execute(
                "SELECT COALESCE(c.crop, p.data) FROM cells c JOIN pictures p ON p.id = c.picture_id "
                "WHERE c.id = ?",
                (cell_id,),
            ).fetchone()
        if row is None:
            raise CaseError(f"There is no cell {cell_id} in {self.path}.")
        return row[0]

    def export(self, case_id: int, folder: str | Path) -> dict[str, int]:
        """Write the reviewed cells of signed case `case_id` into `folder` as `class/picture`,
        the layout `train`, `evaluate` and `adapt` read; cells marked not a cell are left out.
        Class -> number of pictures written."""
        from bloodcell import images, storage

        case = self.get(case_id)
        if not case.signed:
            raise CaseError(
                f"Case {case_id} is not signed yet: sign it first, so that only reviewed labels "
                "teach a model."
            )
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise CaseError(f"{folder} is a file, not a folder; name a folder to export into.")
        written: Counter = Counter()
        for cell in case.cells:
            if cell.label == NOT_A_CELL:
                continue
            data = self.picture(cell.id)
            suffix = Path(cell.file).suffix.lower()
            if cell.box is not None or suffix not in images.EXTENSIONS:
                suffix = ".png"  # a field's crop is stored as PNG
            name = f"case{case.id}-cell{cell.number:04d}{suffix}"
            storage.write_bytes(folder / cell.label / name, data)
            written[cell.label] += 1
        return dict(written)

    def agreement(self) -> list[dict]:
        """How often reviewers kept the model's class, per class the model answered, over the
        signed cases (a case's latest signed version only): cells, kept, changed, agreement."""
        if not self.path.exists():
            return []
        with self._reading() as db:
            rows = db.execute(
                "SELECT id FROM cases c WHERE signed_at IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM cases n WHERE n.parent_id = c.id AND n.signed_at IS NOT NULL)"
            ).fetchall()
            signed = [self._get(db, row["id"]) for row in rows]
        return agreement([cell for case in signed for cell in case.cells])


_CELL_COPIED = (
    "position",
    "file",
    "box",
    "crop",
    "run_id",
    "model_version",
    "model_label",
    "probabilities",
    "status",
)


TO_CHECK = "to check"


def gallery(case: Case) -> list[tuple[str, list[Cell]]]:
    """The review gallery's groups, as analysers show them: the cells to check first (unlike the
    training pictures, then unsure), then one group per current label in `LABELS` order."""
    check = sorted((c for c in case.cells if c.to_check), key=lambda c: (c.status != "unfamiliar", c.number))
    groups = [(TO_CHECK, check)] if check else []
    for label in LABELS:
        members = [c for c in case.cells if c.label == label and not c.to_check]
        if members:
            groups.append((label, members))
    return groups


def following(case: Case, cell_id: int, step: int = 1) -> int:
    """The cell `step` places after `cell_id` in the gallery's order (kept at either end)."""
    order = [c.id for _, members in gallery(case) for c in members]
    where = order.index(cell_id) if cell_id in order else 0
    return order[min(max(where + step, 0), len(order) - 1)]


def agreement(cells: list[Cell]) -> list[dict]:
    """Per class the model answered (`CLASSES` order, classes without cells left out): cells,
    how many a reviewer kept and changed, and the agreement rate (kept / cells)."""
    table = []
    for label in CLASSES:
        answered = [c for c in cells if c.model_label == label]
        if answered:
            kept = sum(not c.changed for c in answered)
            table.append(
                {
                    "class": label,
                    "cells": len(answered),
                    "kept": kept,
                    "changed": len(answered) - kept,
                    "agreement": kept / len(answered),
                }
            )
    return table


def _case(row: sqlite3.Row, cells: tuple[Cell, ...], decisions: tuple = (), platelets: int = 0) -> Case:
    return Case(
        row["id"],
        row["name"],
        row["created"],
        row["updated"],
        row["revision"],
        row["version"],
        row["parent_id"],
        row["signed_by"],
        row["signed_at"],
        cells,
        decisions,
        platelets,
    )


def crop(rgb, box: tuple[int, int, int, int]) -> bytes:
    """PNG of the square around a field's cell `box` (x0, y0, x1, y1), `CROP_MARGIN` wider on each
    side and kept inside the picture."""
    from PIL import Image

    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * CROP_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    height, width = rgb.shape[:2]
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    right, bottom = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    buffer = io.BytesIO()
    Image.fromarray(rgb[top:bottom, left:right]).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Answered:
    """What a model answered for one upload, ready to save: the answers of `Classifier.predict`
    (a single cell's picture) or `Classifier.predict_fields` (a field)."""

    file: str
    data: bytes
    answers: list = field(default_factory=list)
    platelets: int = 0
    is_field: bool = False


def pictures(answered: list[Answered], run_id: str, model_version: str | None) -> list[NewPicture]:
    """The pictures to save from uploads answered by run `run_id`: unusable ones (an answer with
    an error) left out, a field's cells cropped from it."""
    from bloodcell import images

    kept = []
    for upload in answered:
        usable = [a for a in upload.answers if a.error is None]
        if upload.is_field:
            if not usable and not upload.platelets:
                continue
            rgb = images.read_image(upload.data)
            cells = tuple(
                NewCell(
                    a.file,
                    run_id,
                    model_version,
                    a.label,
                    a.probabilities,
                    a.status,
                    tuple(a.box),
                    crop(rgb, a.box),
                )
                for a in usable
            )
            kept.append(NewPicture(upload.file, upload.data, "field", cells, upload.platelets))
        elif usable:
            a = usable[0]
            cell = NewCell(a.file, run_id, model_version, a.label, a.probabilities, a.status)
            kept.append(NewPicture(upload.file, upload.data, "cell", (cell,)))
    return kept


def save(
    name: str,
    answered: list[Answered],
    run_id: str,
    model_version: str | None,
    store: Store | None = None,
) -> int:
    """Save answered uploads as a new case of `run_id`'s answers (the page's and the command
    line's one way in); its id."""
    return (store or Store()).create(name, pictures(answered, run_id, model_version))


def model_version(record: dict, adapted_to: int = 0) -> str | None:
    """A short name of the exact model that answered: its file's checksum (12 hex digits), and
    whether it was adapted to the batch without labels."""
    digest = record.get("model_sha256")
    if not digest:
        return None
    return digest[:12] + (f" adapted to {adapted_to} cells" if adapted_to else "")
