"""Pictures that are not blood cells (noise, gradients, text, drawn shapes), generated: what the
status must flag as `unfamiliar` or the loader refuse, before and after adapting to a lab."""

import numpy as np
from PIL import Image, ImageDraw


def non_cells(seed: int = 0, each: int = 20, side: int = 200) -> dict[str, list[np.ndarray]]:
    """`each` RGB pictures of every kind, reproducible from `seed`."""
    rng = np.random.default_rng(seed)

    def text(i: int) -> np.ndarray:
        picture = Image.new("RGB", (side, side), "white")
        draw = ImageDraw.Draw(picture)
        for line in range(side // 20):
            draw.text((5, 5 + 18 * line), f"Specimen {i} line {line}: lorem ipsum", fill=(0, 0, 0))
        return np.asarray(picture)

    def shapes() -> np.ndarray:
        picture = Image.new("RGB", (side, side), tuple(rng.integers(0, 256, 3).tolist()))
        draw = ImageDraw.Draw(picture)
        for _ in range(5):
            x0, x1 = sorted(rng.integers(0, side, 2).tolist())
            y0, y1 = sorted(rng.integers(0, side, 2).tolist())
            draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.integers(0, 256, 3).tolist()))
        return np.asarray(picture)

    ramp = np.tile(np.linspace(0, 255, side), (side, 1))
    return {
        "noise": [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(each)],
        "gradient": [np.dstack([np.rot90(ramp, i % 4)] * 3).astype(np.uint8) for i in range(each)],
        "text": [text(i) for i in range(each)],
        "shapes": [shapes() for _ in range(each)],
    }


def inputs(classifier, pictures: list[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
    """The model inputs of the pictures the loader takes, and for each picture whether it was
    refused (no cell to see: blank, or no stained cell for a framing model)."""
    from bloodcell import images

    taken, refused = [], []
    for picture in pictures:
        try:
            taken.append(images.prepare(picture, classifier.image_size, classifier.framing)[0])
            refused.append(False)
        except images.UnusableImage:
            refused.append(True)
    size = classifier.image_size
    return (np.stack(taken) if taken else np.zeros((0, size, size, 3), np.uint8)), refused


def flagged(classifier, pictures: list[np.ndarray]) -> list[bool]:
    """For each picture, whether `classifier` refuses it or answers `unfamiliar`."""
    x, refused = inputs(classifier, pictures)
    answered = iter(s == "unfamiliar" for s in classifier.statuses(*classifier.analyse(x)))
    return [True if r else next(answered) for r in refused]
