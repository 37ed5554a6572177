"""Background training jobs: real processes on generated data."""

import time

import pytest

from bloodcell import jobs, runs
from bloodcell.training import TrainConfig

pytestmark = pytest.mark.slow


def wait_for(job: jobs.Job, states: tuple[str, ...], seconds: float = 300) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if job.status in states:
            return job.status
        time.sleep(0.5)
    raise AssertionError(f"job still {job.status} after {seconds} s:\n{job.log()}")


def test_a_job_trains_in_the_background_and_one_runs_at_a_time(tiny_dataset, artifacts):
    config = TrainConfig(arch="cnn", data=str(tiny_dataset), image_size=32, epochs=2, batch_size=16)
    job = jobs.start(config)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start(config)
    assert wait_for(job, ("finished", "failed", "interrupted")) == "finished", job.log()
    assert job.run.status == "finished" and job.run.metrics["n"] > 0
    assert "epoch 2/2" in job.log()
    assert jobs.active() is None


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


def test_a_failing_job_says_why(tmp_path, artifacts):
    (tmp_path / "empty").mkdir()
    job = jobs.start(TrainConfig(arch="cnn", data=str(tmp_path / "empty"), epochs=1))
    assert wait_for(job, ("failed", "finished", "interrupted")) == "failed"
    assert "no class folders" in job.record["error"]
