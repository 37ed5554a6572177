"""Background training jobs for the dashboard: one process per job, one training at a time.

A job runs `python -m bloodcell.jobs JOB_DIR LOCK_FD` in its own session, so it outlives page
reloads and closed browsers. artifacts/jobs/<job_id>/ holds job.json and the job's log. The
machine's training lock (artifacts/jobs/.lock) decides who trains: `start` takes it and hands it
to the job's process, which holds it for its life; command-line training takes it too
(`exclusive`).
"""

import contextlib
import dataclasses
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bloodcell import processes, runs, storage

LOCK = ".lock"
ROOT = Path(__file__).resolve().parent.parent
BUSY = "A training job is already running on this machine; wait for it or cancel it first."
# TensorFlow's start-up chatter that TF_CPP_MIN_LOG_LEVEL does not reach: what its C++ runtime
# logs before absl logging is set up, and the failed CUDA probe of a machine without a GPU.
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|E\d{4} .*(failed call to cuInit|Unable to register cu\w+ factory)"
    r"|To enable the following instructions: "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] "
)


class JobError(ValueError):
    """A job that cannot be started or found; the message says why."""


def jobs_dir() -> Path:
    return runs.artifacts_dir() / "jobs"


@dataclass
class Job:
    id: str
    path: Path

    @property
    def record(self) -> dict:
        return storage.read_json(self.path / "job.json")

    def update(self, **fields) -> None:
        with (self.path / ".update").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # the page's process and the job's both update job.json
            storage.write_json(self.path / "job.json", {**self.record, **fields})

    @property
    def status(self) -> str:
        """queued, running, finished, failed, cancelled, or interrupted (its process died)."""
        record = self.record
        if record["status"] in ("queued", "running") and not processes.alive(record):
            return "interrupted"
        return record["status"]

    @property
    def run(self) -> runs.Run | None:
        run_id = self.record.get("run_id")
        return runs.get(run_id) if run_id else None

    def log(self, lines: int = 40) -> str:
        path = self.path / "log.txt"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def cancel(self) -> bool:
        """Ask the job's process to stop (its run is left marked cancelled, earlier runs
        untouched). False when there is nothing to stop: the job has ended, or the recorded
        process is gone or cannot be proven to be the job's (a pid reused after a crash)."""
        record = self.record
        if record["status"] not in ("queued", "running") or not processes.proven(record):
            return False
        try:
            os.killpg(record["pid"], signal.SIGTERM)
        except ProcessLookupError:  # it ended since it was checked
            return False
        return True


def all_jobs() -> list[Job]:
    if not jobs_dir().exists():
        return []
    found = [Job(p.name, p) for p in jobs_dir().iterdir() if (p / "job.json").exists()]
    return sorted(found, key=lambda j: j.id, reverse=True)


def get(job_id: str) -> Job:
    path = jobs_dir() / runs.check_run_id(job_id)
    if not (path / "job.json").exists():
        raise JobError(f"There is no job '{job_id}'.")
    return Job(job_id, path)


def active() -> Job | None:
    """The job that is running now, if any."""
    return next((job for job in all_jobs() if job.status in ("queued", "running")), None)


def _lock():
    """The machine's training lock, taken without waiting; None while someone else holds it."""
    try:
        jobs_dir().mkdir(parents=True, exist_ok=True)
        handle = (jobs_dir() / LOCK).open("a")
    except OSError as error:
        raise storage.StorageError(
            f"Cannot start training: {jobs_dir()} is not writable ({error.strerror}). "
            "Check the artifacts folder's permissions and free space."
        ) from error
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def exclusive(config=None) -> Iterator[None]:
    """Hold the machine's training lock while the block runs (command-line training): refused
    with a sentence while a dashboard job or another training holds it. The workers of a
    `multiworker` cluster train one run together, several per host at times, and take none."""
    if config is not None and config.strategy == "multiworker":
        yield
        return
    handle = _lock()
    if handle is None:
        raise JobError(BUSY)
    with handle:
        yield


def start(config) -> Job:
    """Start training `config` (a TrainConfig) in a background process.

    The training lock decides: of two pages starting a job at once, one is refused with a
    sentence before anything is created."""
    handle = _lock()
    if handle is None:
        raise JobError(BUSY)
    with handle:  # closing this process's copy leaves the lock to the job's process
        job_id, path = runs.new_directory(jobs_dir(), config.arch)
        job = Job(job_id, path)
        storage.write_json(
            path / "job.json",
            {"id": job_id, "status": "queued", "config": dataclasses.asdict(config), "created": time.time()},
        )
        try:
            with (path / "log.txt").open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bloodcell.jobs", str(path), str(handle.fileno())],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    pass_fds=(handle.fileno(),),
                    env=_environment(),
                )
        except OSError as error:
            job.update(status="failed", error=f"Its process could not be started: {error.strerror}.")
            raise JobError(f"The training process could not be started: {error.strerror}.") from error
        job.update(**processes.process_identity(process.pid))
    return job


def _environment() -> dict[str, str]:
    """The job's environment: unbuffered output, and this project importable whatever the
    working directory, which the job keeps (relative paths in its config mean what they meant)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    # PYTHONSAFEPATH: the working directory is not put first on sys.path to shadow the project
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "PYTHONSAFEPATH": "1"}


@contextlib.contextmanager
def _quiet_output() -> Iterator[None]:
    """Pass this process's stdout and stderr (their file descriptors, so TensorFlow's C++
    logging too) through a filter that drops `NOISE` on the way to the job's log."""
    log = os.dup(1)
    read, write = os.pipe()
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with open(read, "rb") as lines:
            for line in lines:
                if not NOISE.match(line.decode(errors="replace")):
                    with contextlib.suppress(OSError):  # a full disk loses log lines, never stalls training
                        os.write(log, line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)  # closes the pipe's last writers: the filter reads to the end and stops
        os.dup2(log, 2)
        thread.join()
        os.close(log)


def _run(path: Path, lock_fd: int) -> int:
    """The job's process: train, holding the training lock inherited as `lock_fd` until it exits."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # before the slow imports, so a cancel then is one too
    os.set_inheritable(lock_fd, False)
    job = Job(path.name, path)
    job.update(status="running", started=time.time())
    current: list[runs.Run] = []
    try:
        from bloodcell.config import TrainConfig
        from bloodcell.training import train

        config = TrainConfig(**job.record["config"])
        train(
            config,
            log=lambda line: print(line, flush=True),
            on_run=lambda run: (current.append(run), job.update(run_id=run.id)),
        )
    except KeyboardInterrupt:
        for run in current:
            run.update(status="cancelled")
        job.update(status="cancelled", finished=time.time())
        print("cancelled", flush=True)
        return 1
    except Exception as error:  # noqa: BLE001 - any failure is reported on the job, then re-shown in its log
        traceback.print_exc()
        for run in current:
            run.update(status="failed", error=str(error))
        job.update(status="failed", error=str(error), finished=time.time())
        return 1
    job.update(status="finished", finished=time.time())
    return 0


if __name__ == "__main__":
    with _quiet_output():
        code = _run(Path(sys.argv[1]), int(sys.argv[2]))
    sys.exit(code)
