"""Cases in SQLite: round trip, migrations, concurrent writers, a killed save, export, the CLI."""

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bloodcell import cases, datasets
from bloodcell.classes import CLASSES
from bloodcell.commands import cases as cases_command
from tests.conftest import POOL, ROOT, cell_image, encode, needs_pool


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cases.sqlite3"
    monkeypatch.setenv("BLOODCELL_CASES", str(path))
    return path


def new_cell(k: int, status: str = "confident", box=None, crop=None) -> cases.NewCell:
    label = CLASSES[k % 8]
    p = {c: (0.9 if c == label else 0.1 / 7) for c in CLASSES}
    return cases.NewCell(f"cell{k}.png", "run-1", "abc123def456", label, p, status, box, crop)


def pictures(n: int = 4) -> list[cases.NewPicture]:
    single = [
        cases.NewPicture(f"cell{k}.png", encode(cell_image(k, seed=k)), "cell", (new_cell(k),))
        for k in range(n)
    ]
    crop = encode(cell_image(6, size=48))
    field = cases.NewPicture(
        "field.png",
        encode(cell_image(0, size=200)),
        "field",
        (new_cell(6, "review", (10, 10, 60, 60), crop), new_cell(4, "unfamiliar", (80, 80, 120, 130), crop)),
        platelets=3,
    )
    return [*single, field]


def test_a_case_round_trips_with_its_pictures_and_answers(db):
    store = cases.Store()
    case_id = store.create("  sample  2024-17 ", pictures())
    case = store.get(case_id)
    assert case.name == "sample 2024-17" and case.revision == 1 and case.version == 1 and not case.signed
    assert [c.number for c in case.cells] == [1, 2, 3, 4, 5, 6]
    assert [c.label for c in case.cells] == [*CLASSES[:4], "neutrophil", "lymphocyte"]
    field_cell = case.cells[4]
    assert field_cell.box == (10, 10, 60, 60) and field_cell.status == "review" and field_cell.to_check
    assert field_cell.model_version == "abc123def456" and field_cell.run_id == "run-1"
    assert field_cell.probabilities["neutrophil"] == pytest.approx(0.9)
    assert case.field_platelets == 3
    assert store.picture(case.cells[0].id) == encode(cell_image(0, seed=0))  # kept without the upload
    assert store.picture(field_cell.id) == encode(cell_image(6, size=48))  # a field's cell: its crop
    assert case.counts() == {c: 1 for c in CLASSES[:5]} | {"neutrophil": 1}
    [summary] = store.summaries()
    assert summary["id"] == case_id and summary["cells"] == 6
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_database_lives_in_the_users_data_folder_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("BLOODCELL_CASES", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert cases.database_path() == tmp_path / "data" / "bloodcell" / "cases.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert ROOT not in cases.database_path().parents


def test_bad_names_labels_and_empty_cases_are_refused_with_a_sentence(db):
    store = cases.Store()
    with pytest.raises(cases.CaseError, match="sample name or number"):
        store.create("   ", pictures())
    with pytest.raises(cases.CaseError, match="at most 80"):
        store.create("x" * 81, pictures())
    with pytest.raises(cases.CaseError, match="no cell to save"):
        store.create("empty", [])
    case_id = store.create("s1", pictures(1))
    cell = store.get(case_id).cells[0]
    with pytest.raises(cases.CaseError, match="not a label"):
        store.decide(case_id, cell.id, "blast", "AB", 1)
    with pytest.raises(cases.CaseError, match="name or initials"):
        store.decide(case_id, cell.id, "ig", " ", 1)
    with pytest.raises(cases.CaseError, match="no case 99"):
        store.get(99)


def test_decisions_are_logged_append_only_and_a_signed_case_is_read_only(db):
    store = cases.Store()
    case_id = store.create("s1", pictures())
    cells = store.get(case_id).cells
    case = store.decide(case_id, cells[0].id, "lymphocyte", "AB", 1)
    case = store.decide(case_id, cells[4].id, cases.NOT_A_CELL, "CD", case.revision)
    case = store.decide(case_id, cells[5].id, "lymphocyte", "CD", case.revision)  # confirms the model
    assert case.revision == 4
    assert case.cells[0].label == "lymphocyte" and case.cells[0].changed and case.cells[0].decided_by == "AB"
    assert case.cells[4].label == cases.NOT_A_CELL
    assert not case.cells[5].changed and not case.cells[5].to_check
    assert [(d.action, d.label, d.reviewer) for d in case.decisions] == [
        ("label", "lymphocyte", "AB"),
        ("label", cases.NOT_A_CELL, "CD"),
        ("label", "lymphocyte", "CD"),
    ]
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE decisions SET label = 'basophil'")
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM decisions")

    signed = store.sign(case_id, "CD", case.revision)
    assert signed.signed and signed.signed_by == "CD" and signed.decisions[-1].action == "sign"
    with pytest.raises(cases.SignedCase, match="read-only; start a new version"):
        store.decide(case_id, cells[1].id, "ig", "CD", signed.revision)
    with pytest.raises(cases.SignedCase):
        store.sign(case_id, "CD", signed.revision)

    again = store.get(store.new_version(case_id, "EF"))
    assert again.parent_id == case_id and again.version == 2 and not again.signed
    assert [c.label for c in again.cells] == [c.label for c in signed.cells]
    assert [c.decided_by for c in again.cells] == [c.decided_by for c in signed.cells]
    assert again.decisions[-1].action == "new version" and again.decisions[-1].reviewer == "EF"
    store.decide(again.id, again.cells[1].id, "ig", "EF", again.revision)
    assert store.get(case_id).cells[1].label == CLASSES[1]  # the signed version is untouched


def test_a_second_writer_with_a_stale_revision_is_told_not_overwritten(db):
    first, second = cases.Store(db), cases.Store(db)  # two tabs: each its own connections
    case_id = first.create("s1", pictures())
    seen_by_first, seen_by_second = first.get(case_id), second.get(case_id)
    cell = seen_by_first.cells[0]
    first.decide(case_id, cell.id, "monocyte", "AB", seen_by_first.revision)
    with pytest.raises(cases.StaleCase, match=r"changed by someone else.*your change was not saved"):
        second.decide(case_id, cell.id, "eosinophil", "CD", seen_by_second.revision)
    with pytest.raises(cases.StaleCase):
        second.sign(case_id, "CD", seen_by_second.revision)
    now = second.get(case_id)
    assert now.cells[0].label == "monocyte" and not now.signed and len(now.decisions) == 1


def test_simultaneous_writers_on_one_revision_one_wins_the_others_are_told(db):
    store = cases.Store(db)
    case_id = store.create("s1", pictures())
    cell = store.get(case_id).cells[0]
    outcomes = []
    start = threading.Barrier(6)

    def write(label: str) -> None:
        start.wait()
        try:
            cases.Store(db).decide(case_id, cell.id, label, "AB", 1)
            outcomes.append(("saved", label))
        except cases.StaleCase:
            outcomes.append(("told", label))

    threads = [threading.Thread(target=write, args=(label,)) for label in CLASSES[2:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = [label for outcome, label in outcomes if outcome == "saved"]
    assert len(saved) == 1 and len(outcomes) == 6
    case = store.get(case_id)
    assert case.cells[0].label == saved[0] and case.revision == 2 and len(case.decisions) == 1


KILLER = """
import os, signal, sys
from bloodcell import cases
from tests.test_cases import pictures

real = cases.schema.connect  # what every Store opens its connections with
def connect(path=None):
    db = real(path)
    inserted = []
    def trace(sql):
        if sql.startswith(sys.argv[2]):
            inserted.append(sql)
            if len(inserted) == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)
    db.set_trace_callback(trace)
    return db
cases.schema.connect = connect
cases.Store(sys.argv[1]).create("killed", pictures(6))
os.kill(os.getpid(), signal.SIGKILL)  # killed at once after the save returned
"""


@pytest.mark.parametrize(
    "when, nth, kept",
    [("INSERT INTO cells", 4, 0), ("INSERT INTO pictures", 3, 0), ("COMMIT", 1, 0), ("none", 0, 1)],
    ids=["mid-cells", "mid-pictures", "as-it-commits", "after-the-save"],
)
def test_a_process_killed_during_a_save_leaves_the_case_wholly_saved_or_not_at_all(db, when, nth, kept):
    store = cases.Store(db)
    store.create("before", pictures(1))
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(db), when, str(nth)], cwd=ROOT, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    names = [s["name"] for s in store.summaries()]
    assert names == ["killed", "before"][1 - kept :]
    if kept:
        assert len(store.get(store.summaries()[0]["id"]).cells) == 8
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = "SELECT COUNT(*) FROM cells WHERE case_id NOT IN (SELECT id FROM cases)"
        assert raw.execute(orphans).fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM pictures").fetchone()[0] == 2 + 7 * kept  # "before" has 2


def test_a_first_version_database_is_migrated_with_its_cases_kept(db):
    raw = sqlite3.connect(db, isolation_level=None)
    cases.MIGRATIONS[0](raw)
    raw.execute("PRAGMA user_version = 1")
    raw.execute(
        "INSERT INTO cases (id, name, created, updated) VALUES (7, 'old', '2024-01-01', '2024-01-01')"
    )
    raw.execute("INSERT INTO pictures (id, case_id, file, kind, data) VALUES (1, 7, 'a.png', 'cell', x'00')")
    raw.execute(
        "INSERT INTO cells (case_id, picture_id, position, file, run_id, model_label, probabilities, status) "
        "VALUES (7, 1, 1, 'a.png', 'run-0', 'basophil', '{\"basophil\": 1.0}', 'confident')"
    )
    raw.execute(
        "INSERT INTO decisions (case_id, cell_id, action, label, reviewer, at) "
        "VALUES (7, 1, 'label', 'eosinophil', 'AB', '2024-01-02')"
    )
    raw.execute("UPDATE decisions SET reviewer = 'XY'")  # version 1 did not guard its log yet
    raw.close()

    case = cases.Store().get(7)
    assert case.name == "old" and case.cells[0].label == "eosinophil" and case.cells[0].decided_by == "XY"
    assert case.cells[0].model_version is None  # unknown for cells saved before version 2
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == cases.SCHEMA_VERSION == 2
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM decisions")


def test_a_database_from_a_newer_bloodcell_is_refused_not_misread(db):
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {cases.SCHEMA_VERSION + 1}")
    with pytest.raises(cases.CaseError, match="newer bloodcell"):
        cases.Store().summaries()


def test_a_file_that_is_no_database_is_a_sentence(db):
    db.write_bytes(b"this is a text file, not a database" * 100)
    with pytest.raises(cases.CaseError, match="cannot be opened"):
        cases.Store().get(1)


def signed_case(store: cases.Store) -> cases.Case:
    case_id = store.create("s1", pictures(8))
    case = store.get(case_id)
    case = store.decide(case_id, case.cells[0].id, "neutrophil", "AB", case.revision)
    case = store.decide(case_id, case.cells[8].id, cases.NOT_A_CELL, "AB", case.revision)
    return store.sign(case_id, "AB", case.revision)


def test_export_writes_a_labelled_folder_that_dataset_discovery_reads(db, tmp_path):
    store = cases.Store()
    unsigned = store.create("s2", pictures(2))
    with pytest.raises(cases.CaseError, match="not signed yet"):
        store.export(unsigned, tmp_path / "out")
    case = signed_case(store)
    written = store.export(case.id, tmp_path / "out")
    assert sum(written.values()) == 9  # 10 cells, one marked not a cell
    assert written["neutrophil"] == 2 and "basophil" not in written  # the basophil was a neutrophil
    found = datasets.discover(tmp_path / "out")
    labels = sorted(found.classes[i] for i in found.labels)
    expected = sorted(c.label for c in case.cells if c.label != cases.NOT_A_CELL)
    assert labels == expected
    assert (tmp_path / "out" / "lymphocyte" / f"case{case.id}-cell0010.png").is_file()  # a field's crop
    assert store.export(case.id, tmp_path / "out") == written  # exporting again overwrites, no doubles
    assert len(datasets.discover(tmp_path / "out")) == 9


def test_agreement_counts_the_latest_signed_version_of_each_case(db):
    store = cases.Store()
    case = signed_case(store)
    table = {row["class"]: row for row in store.agreement()}
    assert table["basophil"] == {"class": "basophil", "cells": 1, "kept": 0, "changed": 1, "agreement": 0.0}
    assert table["neutrophil"] | {"class": None} == {
        "class": None,
        "cells": 2,
        "kept": 1,
        "changed": 1,
        "agreement": 0.5,
    }
    assert table["eosinophil"]["agreement"] == 1.0
    again = store.get(store.new_version(case.id, "CD"))
    store.sign(again.id, "CD", store.decide(again.id, again.cells[1].id, "ig", "CD", again.revision).revision)
    table = {row["class"]: row for row in store.agreement()}
    assert table["basophil"]["cells"] == 1 and table["eosinophil"]["changed"] == 1  # counted once
    assert cases.Store(db.parent / "none.sqlite3").agreement() == []
    assert not (db.parent / "none.sqlite3").exists()  # looking creates no database


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cases")
    cases_command.add_arguments(parser)
    return cases_command.run(parser.parse_args(argv))


def test_the_command_line_lists_shows_and_exports(db, tmp_path, capsys):
    store = cases.Store()
    case = signed_case(store)
    assert cli("list", "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == case.id and listed["signed_by"] == "AB"
    assert cli("show", str(case.id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    labels = [c["label"] for c in shown["cells"]]
    assert shown["counts"] == {k: labels.count(k) for k in set(labels)}
    assert cli("show", str(case.id)) == 0 and "changed by AB" in capsys.readouterr().out
    assert cli("export", str(case.id), str(tmp_path / "out")) == 0
    assert "9 reviewed cells" in capsys.readouterr().out
    assert cli("show", "41") == 2 and "no case 41" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli("export", str(case.id), str(tmp_path / "file")) == 2
    assert "is a file" in capsys.readouterr().err


def test_importing_the_command_line_loads_no_tensorflow():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bloodcell.commands.cases; print(sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tensorflow" not in loaded and "keras" not in loaded


@pytest.mark.slow
@needs_pool
def test_cases_add_answers_real_pictures_as_the_page_does(db, tmp_path, capsys):
    from bloodcell.predictor import Classifier

    files = [sorted((POOL / c).glob("*.jpg"))[0] for c in ("neutrophil", "lymphocyte", "platelet")]
    (tmp_path / "notes.jpg").write_text("not a picture")
    assert cli("add", "--name", "run 12", *map(str, files), str(tmp_path / "notes.jpg")) == 2
    out, err = capsys.readouterr()
    assert "notes.jpg" in err and "3 cells" in out
    case = cases.Store().get(int(out.split()[-1]))
    expected = Classifier.load(None).predict([(f.name, f) for f in files])
    assert [(c.file, c.model_label, c.status) for c in case.cells] == [
        (a.file, a.label, a.status) for a in expected
    ]
    assert case.cells[0].model_version and len(case.cells[0].model_version) == 12
    assert cases.Store().picture(case.cells[0].id) == files[0].read_bytes()
    assert cli("add", "--name", "", str(files[0])) == 2 and "sample name" in capsys.readouterr().err
    assert cli("add", "--name", "x", "--model", "no-such-run", str(files[0])) == 2


def test_cases_add_of_fields_keeps_each_cell_with_its_box_and_crop(db, tmp_path, capsys, served_model):
    from PIL import Image

    from tests.test_finder import field

    picture, _ = field()
    Image.fromarray(picture).save(tmp_path / "field.png")
    assert cli("add", "--name", "fields", "--fields", str(tmp_path / "field.png")) == 0
    case = cases.Store().get(int(capsys.readouterr().out.split()[-1]))
    assert len(case.cells) == 3 and case.field_platelets == 3
    assert [c.file for c in case.cells] == ["field.png #1", "field.png #2", "field.png #3"]
    assert all(c.box for c in case.cells) and case.cells[0].run_id == served_model.id
    assert cases.Store().picture(case.cells[0].id)[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_saved_case_is_read_by_a_fresh_process(db):
    """A restart sees what was saved, the write-ahead log included."""
    store = cases.Store(db)
    case_id = store.create("kept", pictures(2))
    read = subprocess.run(
        [sys.executable, "-c", f"from bloodcell import cases; print(cases.Store().get({case_id}).name)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BLOODCELL_CASES": str(db)},
    )
    assert read.stdout.strip() == "kept", read.stderr
