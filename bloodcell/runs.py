"""Run storage: the only module that knows the run directory layout (DESIGN.md, contract).

artifacts/runs/<run_id>/ holds run.json, metrics.json, confusion.json, history.csv,
predictions.npz and, where kept, model.keras with its sha256. artifacts/default names the run
that serves predictions. Every file is written atomically; a run that is still marked
`running` but whose process is gone is reported as `interrupted`.
"""

import csv
import hashlib
import io
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcell import storage

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
MODEL = "model.keras"
CHECKPOINT = "checkpoint.keras"


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
class Run:
    id: str
    path: Path

    @property
    def record(self) -> dict:
        try:
            return storage.read_json(self.path / "run.json")
        except (OSError, ValueError) as error:
            raise RunError(f"Run {self.id} has no readable run.json.") from error

    def update(self, **fields) -> dict:
        record = {**self.record, **fields}
        storage.write_json(self.path / "run.json", record)
        return record

    @property
    def status(self) -> str:
        record = self.record
        status = record.get("status", "unknown")
        if status == "running" and not alive(record.get("pid"), record.get("host", "")):
            return "interrupted"
        return status

    @property
    def metrics(self) -> dict | None:
        return _read_optional(self.path / "metrics.json")

    @property
    def progress(self) -> dict | None:
        return _read_optional(self.path / "progress.json")

    @property
    def confusion(self) -> dict | None:
        return _read_optional(self.path / "confusion.json")

    def history(self) -> list[dict]:
        path = self.path / "history.csv"
        if not path.exists():
            return []
        with path.open(newline="") as fh:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def predictions(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "predictions.npz") as stored:
            return {k: stored[k] for k in stored.files}

    @property
    def has_model(self) -> bool:
        return (self.path / MODEL).exists()

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def write_json(self, name: str, value) -> None:
        storage.write_json(self.path / name, value)

    def read_json(self, name: str):
        """A JSON record of this run by file name, or None where it was not written."""
        return _read_optional(self.path / name)

    def write_history(self, history: dict[str, list[float]]) -> None:
        keys = list(history)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for epoch, values in enumerate(zip(*(history[k] for k in keys), strict=True), start=1):
            writer.writerow([epoch, *(f"{v:.6g}" for v in values)])
        storage.write_bytes(self.path / "history.csv", buffer.getvalue().encode())

    def write_trust(self, report: dict, familiarity: dict[str, np.ndarray] | None) -> None:
        """calibration.json, and trust.npz where the familiarity model is to be kept (it serves
        beside a kept model only, and holds a features x features matrix)."""
        storage.write_json(self.path / "calibration.json", report)
        if familiarity is not None:
            storage.write_npz(self.path / "trust.npz", **familiarity)

    @property
    def calibration(self) -> dict | None:
        return _read_optional(self.path / "calibration.json")

    def familiarity(self) -> dict[str, np.ndarray] | None:
        path = self.path / "trust.npz"
        if not path.exists():
            return None
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}

    def write_predictions(self, **arrays: np.ndarray) -> None:
        storage.write_npz(self.path / "predictions.npz", **arrays)

    def save_model(self, model) -> None:
        """Save the model atomically and record its sha256 beside it."""
        digest = self._save_keras(model, MODEL)
        storage.write_bytes(self.path / f"{MODEL}.sha256", f"{digest}  {MODEL}\n".encode())
        self.update(model_sha256=digest)

    def _save_keras(self, model, name: str) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".model-", suffix=".keras")
        os.close(fd)
        try:
            model.save(tmp)
            digest = _sha256(Path(tmp))
            os.replace(tmp, self.path / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return digest

    def save_checkpoint(self, model, epoch: int, curves: list[dict], seconds: float) -> None:
        """Keep the model with its optimizer after `epoch` completed epochs, to resume from."""
        digest = self._save_keras(model, CHECKPOINT)
        self.update(
            checkpoint_epoch=epoch,
            checkpoint_sha256=digest,
            checkpoint_curves=curves,
            checkpoint_seconds=seconds,
        )

    def load_checkpoint(self):
        """(compiled model, completed epochs, their curves) from the last checkpoint."""
        record = self.record
        model = self._load_keras(CHECKPOINT, record.get("checkpoint_sha256"), compile=True)
        return model, record["checkpoint_epoch"], record.get("checkpoint_curves", [])

    def restart(self) -> None:
        """Mark an interrupted run as running again in this process."""
        record = self.record
        self.update(
            status="running",
            host=socket.gethostname(),
            pid=os.getpid(),
            train_seconds_before_resume=record.get("checkpoint_seconds", 0.0),
        )

    def load_model(self):
        """Load this run's model in safe mode, after checking its sha256 against the record."""
        return self._load_keras(MODEL, self.record.get("model_sha256"))

    def _load_keras(self, name: str, expected: str | None, compile: bool = False):
        path = self.path / name
        if not path.exists():
            raise RunError(f"Run {self.id} kept no {name.removesuffix('.keras')} file.")
        if not expected or _sha256(path) != expected:
            raise RunError(
                f"The {name} file of run {self.id} fails its checksum; "
                "it was changed or damaged and will not be loaded."
            )
        import keras

        from bloodcell import archs  # noqa: F401 - registers the custom layers before loading

        return keras.saving.load_model(path, compile=compile, safe_mode=True)


def _read_optional(path: Path):
    return storage.read_json(path) if path.exists() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def alive(pid: int | None, host: str | None = None) -> bool:
    """Whether process `pid` on `host` (default: this machine) still runs; a finished child
    that its parent has not reaped yet (a zombie) does not."""
    if not pid or (host is not None and host != socket.gethostname()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return not os.waitpid(pid, os.WNOHANG)[0]
    except ChildProcessError:  # not our child: os.kill already said it runs
        return True


def create(name: str, record: dict, root: Path | None = None) -> Run:
    """Start a new run directory marked `running` by this process (in `root`, default the
    artifacts' runs folder)."""
    root = root or runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = check_run_id(f"{stamp}-{name}")
    path = root / run_id
    suffix = 1
    while path.exists():
        suffix += 1
        run_id = f"{stamp}-{name}-{suffix}"
        path = root / run_id
    try:
        path.mkdir(parents=True)
    except OSError as error:
        raise storage.StorageError(
            f"Cannot create a run in {root}: {error.strerror}. Check that the artifacts folder is writable."
        ) from error
    run = Run(run_id, path)
    run.write_json(
        "run.json",
        {
            "id": run_id,
            **record,
            "status": "running",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
        },
    )
    return run


def get(run_id: str) -> Run:
    """The stored run `run_id`."""
    path = runs_dir() / check_run_id(run_id)
    if not (path / "run.json").exists():
        raise RunError(f"There is no run '{run_id}' in {runs_dir()}.")
    return Run(run_id, path)


def from_path(path: str | Path) -> Run:
    """The run whose directory (or model file) is `path`; it must hold a run.json."""
    path = Path(path)
    if path.name == MODEL:
        path = path.parent
    if not (path / "run.json").exists():
        raise RunError(f"{path} is not a run directory written by bloodcell (no run.json).")
    return Run(path.name, path)


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
