"""Example pictures for a first visit without files at hand: one cell of each class from the PBC
pool and two microscope fields, offered at one click on the Classify page.

They are read in place from the shared data folders beside the project (`../shared/data`, or
`$BLOODCELL_EXAMPLES`): the rules of both folders forbid copying their pictures into the
repository, so an example whose folder is absent is simply not offered. Each cell was chosen
from the default model's own test split among the pictures it answers `confident` and right;
each field is one where field mode finds two white cells.
"""

import os
from dataclasses import dataclass
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
PBC = (
    'Acevedo A. et al., "A dataset of microscopic peripheral blood cell images for development of '
    'automatic recognition systems", Data in Brief 30 (2020) 105474, doi:10.17632/snkd93bnjr.1; CC BY 4.0'
)
BCCD = 'Shenggan, "BCCD Dataset", github.com/Shenggan/BCCD_Dataset; MIT licence'
# shown name -> (folder under the shared data, picture in it, its source)
PICTURES = {
    "basophil.jpg": ("pbc-pool", "basophil/BA_20161.jpg", PBC),
    "eosinophil.jpg": ("pbc-pool", "eosinophil/EO_115822.jpg", PBC),
    "erythroblast.jpg": ("pbc-pool", "erythroblast/ERB_163533.jpg", PBC),
    "ig.jpg": ("pbc-pool", "ig/IG_325570.jpg", PBC),
    "lymphocyte.jpg": ("pbc-pool", "lymphocyte/LY_13675.jpg", PBC),
    "monocyte.jpg": ("pbc-pool", "monocyte/MO_107817.jpg", PBC),
    "neutrophil.jpg": ("pbc-pool", "neutrophil/BNE_143161.jpg", PBC),
    "platelet.jpg": ("pbc-pool", "platelet/PLATELET_158072.jpg", PBC),
    "field-1.jpg": ("fields-dev", "BloodImage_00242.jpg", BCCD),
    "field-2.jpg": ("fields-dev", "BloodImage_00044.jpg", BCCD),
}


@dataclass(frozen=True)
class Example:
    """One example picture: the name it is shown and answered under, its file and its source."""

    name: str
    path: Path
    credit: str

    def read(self) -> bytes:
        return self.path.read_bytes()


def available() -> list[Example]:
    """The example pictures present on this machine, cells first (in class order), then fields."""
    root = Path(os.environ.get("BLOODCELL_EXAMPLES", SHARED_DATA))
    found = [Example(name, root / folder / file, credit) for name, (folder, file, credit) in PICTURES.items()]
    return [example for example in found if example.path.is_file()]
