"""How well field mode finds white cells: recall and precision against annotated fields (Pascal
VOC boxes), the class of the cells found where the annotations give it, and time per field."""

import io
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell import images
from bloodcell.classes import canonical_class
from bloodcell.predictor import Classifier

WHITE = "wbc"  # the VOC name of a white cell of unknown type (BCCD)
TWELVE_MEGAPIXELS = (4000, 3000)
RECORD = "detection.json"  # kept in the measured run


def white_cells(annotation: Path) -> list[tuple[tuple[int, int, int, int], str | None]]:
    """The white cells of a Pascal VOC file: (box, PBC class or None where the type is unknown).
    Red cells and platelets are left out."""
    found = []
    for item in ET.parse(annotation).getroot().iter("object"):
        name = (item.findtext("name") or "").strip()
        kind = canonical_class(name)
        if name.lower() != WHITE and kind in (None, "platelet"):
            continue
        box = item.find("bndbox")
        found.append((tuple(round(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")), kind))
    return found


def measure(folder: str | Path, classifier: Classifier) -> dict:
    """Field mode on every annotated picture of `folder` (a picture and a VOC .xml of the same
    name): a white cell counts as found when a returned box's centre lies inside its box."""
    pairs = [
        (p, p.with_suffix(".xml"))
        for p in sorted(Path(folder).iterdir())
        if p.suffix.lower() in images.EXTENSIONS
    ]
    pairs = [(picture, xml) for picture, xml in pairs if xml.is_file()]
    if not pairs:
        raise ValueError(f"{folder} holds no pictures with a Pascal VOC .xml file of the same name.")
    classifier.predict_fields([("warm-up", pairs[0][0])])
    annotated = hits = found = in_place = typed = right = 0
    seconds = []
    for picture, xml in pairs:
        started = time.perf_counter()
        cells = classifier.predict_fields([(picture.name, picture)])[0].cells
        seconds.append(time.perf_counter() - started)
        truth = white_cells(xml)
        inside = [[_contains(box, cell.box) for cell in cells] for box, _ in truth]
        annotated += len(truth)
        hits += sum(any(row) for row in inside)
        found += len(cells)
        in_place += sum(any(column) for column in zip(*inside, strict=True)) if truth else 0
        for (_, kind), row in zip(truth, inside, strict=True):
            matched = [cell for cell, hit in zip(cells, row, strict=True) if hit]
            if kind is not None and matched:
                typed += 1
                right += matched[0].label == kind
    return {
        "model": classifier.run.id,
        "fields": len(pairs),
        "white_cells": annotated,
        "recall": hits / annotated if annotated else None,
        "found": found,
        "precision": in_place / found if found else None,
        "typed_cells": typed,
        "class_right": right / typed if typed else None,
        "ms_per_field": _percentiles(seconds),
        "ms_12_megapixels": _twelve_megapixels(pairs[0][0], classifier),
    }


def _contains(box, inner) -> bool:
    x0, y0, x1, y1 = box
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return x0 <= cx <= x1 and y0 <= cy <= y1


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}


def _twelve_megapixels(picture: Path, classifier: Classifier, repeats: int = 3) -> dict[str, float]:
    """Time one field enlarged to a 12-megapixel camera's JPEG, from its file, cells included."""
    big = Image.fromarray(images.read_image(picture)).resize(TWELVE_MEGAPIXELS, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as file:
        file.write(buffer.getvalue())
        file.flush()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            classifier.predict_fields([("12 Mpx", file.name)])
            seconds.append(time.perf_counter() - started)
    return _percentiles(seconds)


def markdown(result: dict, folder: str) -> str:
    """The README's table of `measure`."""

    def share(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    return "\n".join(
        [
            f"Model {result['model']}, {result['fields']} annotated fields of `{folder}`:",
            "",
            "| white cells | recall | cells found | precision | class right (typed cells) "
            "| ms per field (median, p95) | 12 Mpx field, ms (median) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {result['white_cells']} | {share(result['recall'])} | {result['found']} "
            f"| {share(result['precision'])} | {share(result['class_right'])} ({result['typed_cells']}) "
            f"| {result['ms_per_field']['median']:.0f}, {result['ms_per_field']['p95']:.0f} "
            f"| {result['ms_12_megapixels']['median']:.0f} |",
        ]
    )
