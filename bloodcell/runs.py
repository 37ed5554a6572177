"""Run storage: the only module that knows the run directory layout (DESIGN.md, contract).

artifacts/runs/<run_id>/ holds run.json, metrics.json, confusion.json, history.csv,
predictions.npz and, where kept, model.keras with its sha256. artifacts/default names the run
that serves predictions. Every file is written atomically, and files that must change together
(a rescored model and its calibration) switch at once (`Run.staged`); a run that is still marked
`running` but whose process is gone is reported as `interrupted`.
"""

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell import storage
from bloodcell.processes import alive, process_identity

MAX_ID = 120
RUN_ID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID - 1}}}$")
MODEL = "model.keras"
CHECKPOINT = "checkpoint.keras"
# A file written inside `Run.staged` waits under this prefix until the switch; run.json lists
# under SWITCHING the staged files of a switch that is being moved into place.
STAGED = ".staged-"
SWITCHING = "switching"
# What serving a run reads besides run.json, and the fields of run.json it reads.
SERVING_FILES = (MODEL, "trust.npz", "calibration.json")
SERVING_FIELDS = ("model_sha256", "temperature", "review_below", "familiar_below", "classes", "image_size")


class RunError(ValueError):
    """A run that does not exist, is incomplete, or whose model fails its checksum."""


def artifacts_dir() -> Path:
    """BLOODCELL_ARTIFACTS, else the project's artifacts/ folder."""
    return Path(os.environ.get("BLOODCELL_ARTIFACTS") or Path(__file__).resolve().parent.parent / "artifacts")


def runs_dir() -> Path:
    return artifacts_dir() / "runs"


def check_run_id(run_id: str) -> str:
    """Validate a run id: letters, digits, '.', '_' and '-' only, so it can never leave runs/."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or run_id in (".", ".."):
        raise RunError(f"'{run_id}' is not a valid run id (letters, digits, '.', '_' and '-' only).")
    return run_id


@dataclass
class _Staging:
    files: set[str] = field(default_factory=set)
    fields: dict = field(default_factory=dict)


@dataclass
class Run:
    id: str
    path: Path
    _staging: _Staging | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def record(self) -> dict:
        try:
            return storage.read_json(self.path / "run.json")
        except (OSError, ValueError) as error:
            raise RunError(f"Run {self.id} has no readable run.json.") from error

    def update(self, **fields) -> dict:
        if self._staging is not None:
            self._staging.fields.update(fields)
            return {**self.record, **self._staging.fields}
        record = {**self.record, **fields}
        storage.write_json(self.path / "run.json", record)
        return record

    @contextlib.contextmanager
    def staged(self):
        """Stage every file and record field this run writes inside the block, then switch them
        all at once with one write of run.json: an interruption leaves the run as it was or
        wholly changed, never new weights beside an old calibration. Readers honour a switch
        that was interrupted while its files were being moved into place; the next `staged`
        finishes it."""
        if self._staging is not None:
            raise RuntimeError("Run.staged blocks cannot be nested.")
        self._finish_switch()
        staging = self._staging = _Staging()
        try:
            yield
        except BaseException:
            for name in staging.files:
                self._staged(name).unlink(missing_ok=True)
            raise
        finally:
            self._staging = None
        if not (staging.files or staging.fields):
            return
        record = {**self.record, **staging.fields, SWITCHING: sorted(staging.files)}
        storage.write_json(self.path / "run.json", record)
        self._finish_switch()

    def _finish_switch(self) -> None:
        """Move the staged files of a committed switch into place, and delete those of a switch
        that was never committed."""
        record = self.record
        for name in record.get(SWITCHING, []):
            if self._staged(name).exists():
                os.replace(self._staged(name), self.path / name)
        for leftover in self.path.glob(f"{STAGED}*"):
            leftover.unlink(missing_ok=True)
        if SWITCHING in record:
            storage.write_json(self.path / "run.json", {k: v for k, v in record.items() if k != SWITCHING})

    def _staged(self, name: str) -> Path:
        return self.path / f"{STAGED}{name}"

    def _target(self, name: str) -> Path:
        """Where file `name` is written now: under its staged name inside `staged`."""
        if self._staging is None:
            return self.path / name
        self._staging.files.add(name)
        return self._staged(name)

    def _file(self, name: str) -> Path:
        """The current file `name`: its staged copy while a committed switch is moved into place."""
        if self._staged(name).exists() and name in self.record.get(SWITCHING, ()):
            return self._staged(name)
        return self.path / name

    def serving_digest(self) -> str:
        """A short digest of what serving this run reads (its model, calibration, familiarity and
        the record's thresholds): it changes whenever any of them is replaced, and costs a read of
        run.json and a few stat calls, so a model cache can be keyed on it."""
        record = self.record
        digest = hashlib.sha256(json.dumps([record.get(k) for k in SERVING_FIELDS]).encode())
        for name in SERVING_FILES:
            try:
                stat = self._file(name).stat()
            except FileNotFoundError:
                digest.update(f"{name}: none\n".encode())
                continue
            digest.update(f"{name}: {stat.st_ino} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    @property
    def status(self) -> str:
        record = self.record
        status = record.get("status", "unknown")
        if status == "running" and not alive(record):
            return "interrupted"
        return status

    @property
    def metrics(self) -> dict | None:
        return storage.read_optional(self._file("metrics.json"))

    @property
    def progress(self) -> dict | None:
        return storage.read_optional(self.path / "progress.json")

    @property
    def confusion(self) -> dict | None:
        return storage.read_optional(self._file("confusion.json"))

    def history(self) -> list[dict]:
        path = self._file("history.csv")
        if not path.exists():
            return []
        with path.open(newline="") as fh:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def predictions(self) -> dict[str, np.ndarray]:
        with np.load(self._file("predictions.npz")) as stored:
            return {k: stored[k] for k in stored.files}

    @property
    def has_model(self) -> bool:
        return self._file(MODEL).exists()

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint file the record names (older runs: checkpoint.keras)."""
        return self.path / self.record.get("checkpoint_file", CHECKPOINT)

    def write_json(self, name: str, value) -> None:
        storage.write_json(self._target(name), value)

    def read_json(self, name: str):
        """A JSON record of this run by file name, or None where it was not written."""
        return storage.read_optional(self._file(name))

    def write_history(self, history: dict[str, list[float]]) -> None:
        keys = list(history)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for epoch, values in enumerate(zip(*(history[k] for k in keys), strict=True), start=1):
            writer.writerow([epoch, *(f"{v:.6g}" for v in values)])
        storage.write_bytes(self._target("history.csv"), buffer.getvalue().encode())

    def write_trust(self, report: dict, familiarity: dict[str, np.ndarray] | None) -> None:
        """calibration.json, and trust.npz where the familiarity model is to be kept (it serves
        beside a kept model only, and holds a features x features matrix)."""
        storage.write_json(self._target("calibration.json"), report)
        if familiarity is not None:
            storage.write_npz(self._target("trust.npz"), **familiarity)

    @property
    def calibration(self) -> dict | None:
        return storage.read_optional(self._file("calibration.json"))

    def familiarity(self) -> dict[str, np.ndarray] | None:
        path = self._file("trust.npz")
        if not path.exists():
            return None
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}

    def write_predictions(self, **arrays: np.ndarray) -> None:
        storage.write_npz(self._target("predictions.npz"), **arrays)

    def save_model(self, model) -> None:
        """Save the model atomically and record its sha256 beside it."""
        saved, digest = self._save_keras(model)
        storage.move(saved, self._target(MODEL))
        storage.write_bytes(self._target(f"{MODEL}.sha256"), f"{digest}  {MODEL}\n".encode())
        self.update(model_sha256=digest)

    def _save_keras(self, model) -> tuple[Path, str]:
        """`model` saved under a temporary name in the run folder, and its sha256."""
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".model-", suffix=".keras")
        os.close(fd)
        try:
            model.save(tmp)
            return Path(tmp), storage.sha256(Path(tmp))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save_checkpoint(self, model, epoch: int, curves: list[dict], seconds: float) -> None:
        """Keep the model with its optimizer after `epoch` completed epochs, to resume from.

        The new file gets a name of its own (from its digest) and the record names it before the
        previous one is deleted, so an interruption always leaves the file the record names."""
        saved, digest = self._save_keras(model)
        name = f"checkpoint-{digest[:16]}.keras"
        storage.move(saved, self.path / name)
        self.update(
            checkpoint_file=name,
            checkpoint_epoch=epoch,
            checkpoint_sha256=digest,
            checkpoint_curves=curves,
            checkpoint_seconds=seconds,
        )
        for old in self.path.glob("checkpoint*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def load_checkpoint(self):
        """(compiled model, completed epochs, their curves) from the last checkpoint."""
        record = self.record
        name = record.get("checkpoint_file", CHECKPOINT)
        model = self._load_keras(name, record.get("checkpoint_sha256"), "checkpoint", compile=True)
        return model, record["checkpoint_epoch"], record.get("checkpoint_curves", [])

    def restart(self) -> None:
        """Mark an interrupted run as running again in this process."""
        record = self.record
        self.update(
            status="running",
            **process_identity(),
            train_seconds_before_resume=record.get("checkpoint_seconds", 0.0),
        )

    def load_model(self):
        """Load this run's model in safe mode, after checking its sha256 against the record."""
        return self._load_keras(MODEL, self.record.get("model_sha256"), "model")

    def _load_keras(self, name: str, expected: str | None, what: str, compile: bool = False):
        path = self._file(name)
        if not path.exists():
            raise RunError(f"Run {self.id} kept no {what} file.")
        if not expected or storage.sha256(path) != expected:
            raise RunError(
                f"The {name} file of run {self.id} fails its checksum; "
                "it was changed or damaged and will not be loaded."
            )
        import keras

        from bloodcell import augment, networks  # noqa: F401 - registers the custom layers before loading

        return keras.saving.load_model(path, compile=compile, safe_mode=True)


def new_directory(root: Path, name: str) -> tuple[str, Path]:
    """A new folder `<time stamp>-<name>` in `root` and its id: suffixed -2, -3... when taken
    (also by another process at the same moment), and the name cut so that the id, suffix
    included, always passes `check_run_id`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while True:
        tail = f"-{suffix}" if suffix > 1 else ""
        run_id = check_run_id(f"{stamp}-{name}"[: MAX_ID - len(tail)] + tail)
        try:
            (root / run_id).mkdir(parents=True)
        except FileExistsError:
            suffix += 1
            continue
        return run_id, root / run_id


def create(name: str, record: dict, root: Path | None = None) -> Run:
    """Start a new run directory marked `running` by this process (in `root`, default the
    artifacts' runs folder)."""
    root = root or runs_dir()
    try:
        run_id, path = new_directory(root, name)
    except OSError as error:
        raise storage.StorageError(
            f"Cannot create a run in {root}: {error.strerror}. Check that the artifacts folder is writable."
        ) from error
    run = Run(run_id, path)
    run.write_json(
        "run.json",
        {"id": run_id, **record, "status": "running", **process_identity(), "started": time.time()},
    )
    return run


def get(run_id: str) -> Run:
    """The stored run `run_id`."""
    path = runs_dir() / check_run_id(run_id)
    if not (path / "run.json").exists():
        raise RunError(f"There is no run '{run_id}' in {runs_dir()}.")
    return Run(run_id, path)


def from_path(path: str | Path) -> Run:
    """The run whose directory (or model file) is `path`: a run directory of this project's
    artifacts, never any other folder, since models load only from the project's own runs."""
    path = Path(path)
    if path.name == MODEL:
        path = path.parent
    inside = path.resolve()
    if inside.parent != runs_dir().resolve():
        raise RunError(
            f"{path} is not a run directory of {runs_dir()}; models load only from this project's runs. "
            "Name a run by its id (`python -m bloodcell runs` lists them), or copy the run's directory there."
        )
    if not (inside / "run.json").exists():
        raise RunError(f"{path} is not a run directory written by bloodcell (no run.json).")
    return Run(inside.name, runs_dir() / inside.name)


def resolve(ref: str | None) -> Run:
    """A run by id, by path, or the default run when `ref` is None."""
    if ref is None:
        return get(default_id())
    if RUN_ID.match(ref) and (runs_dir() / ref / "run.json").exists():
        return get(ref)
    if os.sep in ref or Path(ref).exists():
        return from_path(ref)
    return get(ref)


def all_runs() -> list[Run]:
    """Every stored run, newest first."""
    if not runs_dir().exists():
        return []
    found = [
        Run(p.name, p) for p in runs_dir().iterdir() if RUN_ID.match(p.name) and (p / "run.json").exists()
    ]
    return sorted(found, key=lambda r: r.id, reverse=True)


def default_id() -> str:
    path = artifacts_dir() / "default"
    if not path.exists():
        raise RunError(f"No default model is set ({path} is missing); train one or name a run with --model.")
    return check_run_id(path.read_text().strip())


def set_default(run_id: str) -> None:
    run = get(run_id)
    if not run.has_model:
        raise RunError(f"Run {run_id} kept no model, so it cannot serve predictions.")
    storage.write_bytes(artifacts_dir() / "default", f"{run_id}\n".encode())
