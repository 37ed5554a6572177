"""What a case is made of: its labels, its cells and decisions as read back, what is saved, and
the checks on names a person types. Nothing here touches the database."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from bloodcell.classes import CLASSES, DISPLAY_NAMES

NOT_A_CELL = "unusable"
LABELS: tuple[str, ...] = (*CLASSES, NOT_A_CELL)
LABEL_NAMES: dict[str, str] = DISPLAY_NAMES | {NOT_A_CELL: "Not a cell / unusable"}
MAX_NAME = 80


class CaseError(ValueError):
    """A case that cannot be read or changed as asked; the message says why and what to do."""


class StaleCase(CaseError):
    """A change based on a revision of the case that another writer has since replaced."""


class SignedCase(CaseError):
    """A change asked of a signed (read-only) case."""


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
