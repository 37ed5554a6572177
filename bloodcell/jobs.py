"""Background training jobs for the dashboard: one process per job, one job at a time.

A job runs `python -m bloodcell.jobs JOB_DIR` in its own session, so it outlives page reloads
and closed browsers. artifacts/jobs/<job_id>/ holds job.json and the job's log.
"""

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bloodcell import runs, storage

LOCK = ".lock"


class JobError(RuntimeError):
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
        storage.write_json(self.path / "job.json", {**self.record, **fields})

    @property
    def status(self) -> str:
        """queued, running, finished, failed, cancelled, or interrupted (its process died)."""
        record = self.record
        if record["status"] in ("queued", "running") and not runs.alive(record.get("pid")):
            return "interrupted"
        return record["status"]

    @property
    def run(self) -> runs.Run | None:
        run_id = self.record.get("run_id")
        return runs.get(run_id) if run_id else None

    def log(self, lines: int = 40) -> str:
        path = self.path / "log.txt"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def cancel(self) -> None:
        """Stop the job's process; its run is left marked cancelled, earlier runs untouched."""
        pid = self.record.get("pid")
        if self.status in ("queued", "running") and pid:
            os.killpg(pid, signal.SIGTERM)


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
    """An exclusive lock held by the running job's process for its whole life."""
    jobs_dir().mkdir(parents=True, exist_ok=True)
    handle = (jobs_dir() / LOCK).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def start(config) -> Job:
    """Start training `config` (a TrainConfig) in a background process."""
    busy = active()
    if busy or not _probe_lock():
        raise JobError("A training job is already running on this machine; wait for it or cancel it first.")
    job_id = time.strftime("%Y%m%d-%H%M%S") + f"-{config.arch}"
    path = jobs_dir() / job_id
    path.mkdir(parents=True, exist_ok=False)
    job = Job(job_id, path)
    storage.write_json(
        path / "job.json",
        {"id": job_id, "status": "queued", "config": dataclasses.asdict(config), "created": time.time()},
    )
    with (path / "log.txt").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bloodcell.jobs", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    job.update(pid=process.pid)
    return job


def _probe_lock() -> bool:
    handle = _lock()
    if handle is None:
        return False
    handle.close()
    return True


def _run(path: Path) -> int:
    from bloodcell.training import TrainConfig, train

    job = Job(path.name, path)
    handle = _lock()
    if handle is None:
        job.update(status="failed", error="Another training job was already running.")
        return 1
    job.update(status="running", pid=os.getpid(), started=time.time())
    current: list[runs.Run] = []

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
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
    sys.exit(_run(Path(sys.argv[1])))
