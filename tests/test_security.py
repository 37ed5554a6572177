"""The committed Streamlit configuration keeps the dashboard's protections on; models load only
from the project's own run directories."""

import tomllib

import pytest

from bloodcell import images
from tests.conftest import ROOT


def test_committed_config_keeps_xsrf_and_cors_protection_and_caps_uploads():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 20


def test_the_only_upload_takes_images_never_models():
    uploads = [
        page.name
        for page in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
        for _ in range(page.read_text().count("st.file_uploader("))
    ]
    assert uploads == ["classify.py"]
    assert 'type=[e.lstrip(".") for e in images.EXTENSIONS]' in (ROOT / "pages" / "classify.py").read_text()
    assert not {".keras", ".h5", ".hdf5", ".pb", ".pkl", ".zip"} & set(images.EXTENSIONS)


def test_committed_config_serves_this_machine_only_and_shows_no_tracebacks():
    from streamlit.config import ShowErrorDetailsConfigOptions

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["address"] == "127.0.0.1"  # a lab network goes through an authenticating proxy
    assert set(server["allowedHosts"]) == {"localhost", "127.0.0.1"}
    assert client["showErrorDetails"] == ShowErrorDetailsConfigOptions.NONE
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True


def test_models_load_only_from_the_projects_run_directories(served_model, tmp_path, capsys):
    import shutil

    from bloodcell import cli, runs
    from tests.conftest import cell_image

    elsewhere = tmp_path / "elsewhere" / served_model.id
    shutil.copytree(served_model.path, elsewhere)
    for ref in (
        elsewhere,
        elsewhere / "model.keras",
        runs.runs_dir() / ".." / ".." / "elsewhere" / served_model.id,
    ):
        with pytest.raises(runs.RunError, match="models load only from this project's runs"):
            runs.resolve(str(ref))
    (runs.runs_dir() / "linked").symlink_to(elsewhere)
    with pytest.raises(runs.RunError, match="models load only from this project's runs"):
        runs.resolve(str(runs.runs_dir() / "linked"))
    cell_image(0).save(tmp_path / "cell.png")
    assert cli.main(["predict", str(tmp_path / "cell.png"), "--model", str(elsewhere)]) == 2
    assert "models load only from this project's runs" in capsys.readouterr().err
    assert runs.resolve(str(served_model.path)).id == served_model.id  # its own directory, by path
    assert runs.resolve(str(served_model.path / "model.keras")).id == served_model.id
