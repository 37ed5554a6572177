"""The committed Streamlit configuration keeps the dashboard's protections on."""

import tomllib

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
