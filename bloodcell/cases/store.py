"""`Store`: saving, reading, deciding, signing and new versions of cases, each change one
transaction checked against the revision it was based on; and the export of a signed case."""

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bloodcell.cases import schema
from bloodcell.cases.records import (
    NOT_A_CELL,
    Case,
    CaseError,
    Cell,
    Decision,
    NewPicture,
    SignedCase,
    StaleCase,
    check_label,
    check_name,
    check_reviewer,
    now,
)
from bloodcell.cases.review import agreement


class Store:
    """The cases database at `path` (default `database_path()`). Every method opens its own
    connection, so one Store serves many threads (Streamlit's sessions); every change is one
    transaction: a killed process leaves it wholly done or not at all."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else schema.database_path()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        db = schema.connect(self.path)
        try:
            db.execute("BEGIN")  # one snapshot for every read of the call
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        db = schema.connect(self.path)
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
