"""Background training jobs: real processes on generated data, and the faults around them."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bloodcell import cli, jobs, processes, runs, storage
from bloodcell.config import TrainConfig
from tests.conftest import ROOT


def wait_for(job: jobs.Job, states: tuple[str, ...], seconds: float = 300) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if job.status in states:
            return job.status
        time.sleep(0.5)
    raise AssertionError(f"job still {job.status} after {seconds} s:\n{job.log()}")


@pytest.mark.slow
def test_a_job_trains_in_the_background_and_one_runs_at_a_time(tiny_dataset, artifacts):
    config = TrainConfig(arch="cnn", data=str(tiny_dataset), image_size=32, epochs=2, batch_size=16)
    job = jobs.start(config)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start(config)
    assert wait_for(job, ("finished", "failed", "interrupted")) == "finished", job.log()
    assert job.run.status == "finished" and job.run.metrics["n"] > 0
    assert "epoch 2/2" in job.log()
    assert "absl::InitializeLog" not in job.log() and "cuInit" not in job.log()  # TensorFlow's start-up noise
    assert jobs.active() is None


@pytest.mark.slow
def test_a_cancelled_job_leaves_earlier_runs_intact(tiny_dataset, artifacts):
    earlier = runs.create("earlier", {})
    earlier.update(status="finished")
    config = TrainConfig(arch="cnn", data=str(tiny_dataset), image_size=32, epochs=200, batch_size=16)
    job = jobs.start(config)
    deadline = time.time() + 120
    while not (job.run and job.run.progress) and time.time() < deadline:
        time.sleep(0.5)
    job.cancel()
    assert wait_for(job, ("cancelled", "interrupted", "failed", "finished"), 60) == "cancelled"
    assert job.run.status == "cancelled" and not job.run.has_model
    assert runs.get(earlier.id).status == "finished"


@pytest.mark.slow
def test_a_failing_job_says_why(tmp_path, artifacts):
    (tmp_path / "empty").mkdir()
    job = jobs.start(TrainConfig(arch="cnn", data=str(tmp_path / "empty"), epochs=1))
    assert wait_for(job, ("failed", "finished", "interrupted")) == "failed"
    assert "no class folders" in job.record["error"]


@pytest.mark.slow
def test_a_job_started_from_another_working_directory_runs(tmp_path, artifacts, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    job = jobs.start(TrainConfig(arch="cnn", data="empty", epochs=1))
    assert wait_for(job, ("failed", "finished", "interrupted")) == "failed", job.log()
    assert "no class folders" in job.record["error"]  # the job imported bloodcell and read its relative path


@pytest.fixture
def stranger():
    """A process of someone else's, in its own process group."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def identity_of(pid: int) -> dict:
    """Who process `pid` is, read from /proc here rather than by the code under test."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "pid_start": int(stat[stat.rindex(")") + 2 :].split()[19]),
    }


def running_job(**identity) -> jobs.Job:
    """A job recorded as running in process `identity`."""
    path = jobs.jobs_dir() / f"20260101-120000-cnn-{len(jobs.all_jobs()) + 1}"
    path.mkdir(parents=True)
    storage.write_json(path / "job.json", {"id": path.name, "status": "running", "config": {}, **identity})
    return jobs.Job(path.name, path)


def test_a_reused_pid_is_not_taken_for_the_jobs_process(artifacts, stranger):
    identity = identity_of(stranger.pid)
    reused = running_job(**{**identity, "pid_start": identity["pid_start"] - 1})
    assert reused.status == "interrupted" and jobs.active() is None
    assert reused.cancel() is False and stranger.poll() is None

    rebooted = running_job(**{**identity, "boot_id": "another-boot"})
    assert rebooted.status == "interrupted" and rebooted.cancel() is False

    # written before start times were kept: only a process older than the record can be the job's
    older = running_job(pid=stranger.pid, started=time.time() - 3600)
    assert older.status == "interrupted" and older.cancel() is False
    assert running_job(pid=stranger.pid, started=time.time()).status == "running"
    assert stranger.poll() is None
    assert processes.process_identity(stranger.pid) == identity


def test_cancel_signals_the_proven_process_only_and_never_raises(artifacts, stranger, monkeypatch):
    job = running_job(**identity_of(stranger.pid))

    assert job.status == "running" and jobs.active() == job

    def vanished(pid, signum):
        raise ProcessLookupError(3, "No such process")

    with monkeypatch.context() as patch:
        patch.setattr(os, "killpg", vanished)  # it ended between the check and the signal
        assert job.cancel() is False
    assert job.cancel() is True
    assert stranger.wait(timeout=60) == -signal.SIGTERM
    assert job.status == "interrupted" and job.cancel() is False


def test_two_pages_starting_a_job_at_once_one_is_refused_with_a_sentence(
    tiny_dataset, artifacts, monkeypatch
):
    config = TrainConfig(arch="cnn", data=str(tiny_dataset), image_size=32, epochs=1)
    inside, meet = threading.Event(), threading.Barrier(2)

    def same_second(fmt):
        inside.set()
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait(timeout=60)  # the other page starts while this one is half-way
        return "20260101-120000"

    monkeypatch.setattr(time, "strftime", same_second)
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: SimpleNamespace(pid=os.getpid()))
    answers = []

    def page():
        try:
            answers.append(jobs.start(config))
        except Exception as error:  # noqa: BLE001 - whatever the page would be shown
            answers.append(error)
        finally:
            meet.abort()

    first = threading.Thread(target=page)
    first.start()
    assert inside.wait(timeout=60)
    second = threading.Thread(target=page)
    second.start()
    second.join()
    first.join()
    started = [a for a in answers if isinstance(a, jobs.Job)]
    refused = [a for a in answers if isinstance(a, Exception)]
    assert len(started) == 1 and len(refused) == 1, answers
    assert isinstance(refused[0], jobs.JobError) and "already running" in str(refused[0])
    assert "Errno" not in str(refused[0]) and str(artifacts) not in str(refused[0])


def test_command_line_training_respects_the_job_lock(tmp_path, artifacts, capsys):
    with jobs._lock():  # a dashboard job's process holds the machine's training lock
        assert cli.main(["train", "--arch", "cnn", "--data", str(tmp_path / "data"), "--epochs", "1"]) == 2
        assert "already running" in capsys.readouterr().err
        assert cli.main(["resume", "20260101-120000-cnn"]) == 2
        assert "already running" in capsys.readouterr().err
    assert cli.main(["resume", "20260101-120000-cnn"]) == 2
    assert "There is no run" in capsys.readouterr().err


def test_the_job_log_is_spared_tensorflows_start_up_noise(tmp_path):
    noise = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1795775095.656392   11383 port.cc:153] oneDNN custom operations are on.\n"
        b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild.\n"
        b"E0000 00:00:1795775105.572146   11383 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
    )
    error = b"E0000 00:00:1795775105.572146   11383 bfc_allocator.cc:52] OOM when allocating tensor\n"
    script = (
        "import os\nfrom bloodcell import jobs\nwith jobs._quiet_output():\n"
        f"    os.write(2, {noise!r})\n    print('epoch 1/2', flush=True)\n    os.write(2, {error!r})\n"
        "print('done')\n"
    )
    with (tmp_path / "log.txt").open("wb") as log:
        subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True
        )
    assert (tmp_path / "log.txt").read_bytes() == b"epoch 1/2\n" + error + b"done\n"
