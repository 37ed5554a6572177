"""docs/results.md is generated from the run records alone, and is up to date with them."""

import argparse
import subprocess
import sys

from bloodcell import docs
from tests.conftest import ROOT


def parsed(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    docs.add_arguments(parser)
    return parser.parse_args(list(words))


def test_the_committed_results_page_is_up_to_date_with_the_records(tmp_path, capsys):
    assert docs.run(parsed("--out", str(tmp_path / "results.md"))) == 0
    assert (tmp_path / "results.md").read_text() == (ROOT / "docs" / "results.md").read_text(), (
        "docs/results.md is out of date: run `python -m bloodcell docs`"
    )
    assert docs.run(parsed("--out", str(ROOT / "docs" / "results.md"), "--check")) == 0


def test_check_says_when_the_page_is_stale_and_writes_nothing(tmp_path, capsys):
    stale = tmp_path / "results.md"
    stale.write_text("# Results\nold figures\n")
    assert docs.run(parsed("--out", str(stale), "--check")) == 1
    assert stale.read_text() == "# Results\nold figures\n"
    assert "-old figures" in capsys.readouterr().out


def test_every_figure_comes_from_a_record(served_model, tmp_path):
    served_model.write_json(
        "metrics.json",
        {
            "n": 20,
            "accuracy": 0.8125,
            "balanced_accuracy": 0.75,
            "macro_f1": 0.7,
            "per_class": {"platelet": {"precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 4}},
        },
    )
    served_model.update(train_seconds=90.0, epochs_run=3, parameters=1234, config={"epochs": 3})
    served_model.write_json("detection.json", {"recall": 0.987})
    docs.write(tmp_path / "results.md")
    text = (tmp_path / "results.md").read_text()
    assert f"Run `{served_model.id}`" in text and "1.5 minutes" in text and "1,234 parameters" in text
    assert "accuracy 81.25%" in text and "| platelet | 50.00% | 25.00% | 33.33% | 4 |" in text
    assert '"recall": 0.987' in text  # a kept measurement, as recorded
    assert "Not measured yet" in text  # the others say which command keeps them
    assert "cmp64-cnn-no-shuffle: no record" in text  # a run named in the prose but absent


def test_importing_docs_loads_no_tensorflow():
    code = "import sys, bloodcell.docs; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
