"""From a model's answers to the pictures of a new case: the one way in of the page and the
command line."""

import io
from dataclasses import dataclass, field

from bloodcell.cases.records import NewCell, NewPicture
from bloodcell.cases.store import Store

# A field's cell is kept as a square crop around its box, this much wider on each side, so the
# picture shows the cell's surroundings as the finder framed it.
CROP_MARGIN = 0.25


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
