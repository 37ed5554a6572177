"""Cases: one sample's cells, the model's answers and every reviewer's decision, kept in SQLite.

A case is named by a sample name or number, never a patient's identity. Its pictures are stored
in the database (a field's cells as crops), so a case outlives the upload. Every human decision
is appended to a log that cannot be changed afterwards; a signed case is read-only, and a new
version of it can be started. Concurrent writers are told, never silently overwritten: each
change names the case revision it was based on and is refused when that revision is stale.

The database lives at `$BLOODCELL_CASES`, by default in the user's data folder; its schema is
versioned (`PRAGMA user_version`) and migrated forward on opening, one step per entry of
`MIGRATIONS`.

The package's modules, each importable without TensorFlow: `records` (labels, cells, cases and
the checks on typed names), `schema` (the database file, its connection and migrations),
`store` (every read and change of the database), `review` (the gallery's order, agreement) and
`answers` (a model's answers saved as a new case). Everything public is named here, so
`from bloodcell import cases; cases.Store(...)` is the way in.
"""

from bloodcell.cases.answers import CROP_MARGIN, Answered, crop, model_version, pictures, save
from bloodcell.cases.records import (
    LABEL_NAMES,
    LABELS,
    MAX_NAME,
    NOT_A_CELL,
    Case,
    CaseError,
    Cell,
    Decision,
    NewCell,
    NewPicture,
    SignedCase,
    StaleCase,
    check_label,
    check_name,
    check_reviewer,
    now,
)
from bloodcell.cases.review import TO_CHECK, agreement, following, gallery
from bloodcell.cases.schema import BUSY_MS, MIGRATIONS, SCHEMA_VERSION, connect, database_path, migrate
from bloodcell.cases.store import Store

__all__ = [
    "BUSY_MS",
    "CROP_MARGIN",
    "LABELS",
    "LABEL_NAMES",
    "MAX_NAME",
    "MIGRATIONS",
    "NOT_A_CELL",
    "SCHEMA_VERSION",
    "TO_CHECK",
    "Answered",
    "Case",
    "CaseError",
    "Cell",
    "Decision",
    "NewCell",
    "NewPicture",
    "SignedCase",
    "StaleCase",
    "Store",
    "agreement",
    "check_label",
    "check_name",
    "check_reviewer",
    "connect",
    "crop",
    "database_path",
    "following",
    "gallery",
    "migrate",
    "model_version",
    "now",
    "pictures",
    "save",
]
