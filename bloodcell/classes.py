"""The eight PBC cell classes, declared once: every other module reads this table."""

import re

CLASSES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

DISPLAY_NAMES: dict[str, str] = {
    "basophil": "Basophil",
    "eosinophil": "Eosinophil",
    "erythroblast": "Erythroblast",
    "ig": "Immature granulocyte",
    "lymphocyte": "Lymphocyte",
    "monocyte": "Monocyte",
    "neutrophil": "Neutrophil",
    "platelet": "Platelet",
}

WHITE_CELLS: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
)

_ALIASES: dict[str, str] = {
    "immature_granulocyte": "ig",
    "immature_granulocytes": "ig",
    "igs": "ig",
    "granulocyte_immature": "ig",
    "promyelocyte": "ig",
    "myelocyte": "ig",
    "metamyelocyte": "ig",
    "thrombocyte": "platelet",
    "nrbc": "erythroblast",
    "normoblast": "erythroblast",
    "ba": "basophil",
    "eo": "eosinophil",
    "erb": "erythroblast",
    "ly": "lymphocyte",
    "mo": "monocyte",
    "ne": "neutrophil",
    "neu": "neutrophil",
    "pl": "platelet",
    "plt": "platelet",
}


def canonical_class(name: str) -> str | None:
    """The PBC class a folder name stands for (case, separators and plurals tolerated), or None."""
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    for candidate in (key, key.removesuffix("s")):
        if candidate in CLASSES:
            return candidate
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    return None
