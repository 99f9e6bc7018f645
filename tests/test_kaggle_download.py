"""Downloading the competition through the real `kaggle` client and the stand-in server:
`harness data --source kaggle` as a subprocess, and `harness.kaggle.api.download_competition` in
process for the failures."""

from __future__ import annotations

import io
import zipfile

import pytest
from kaggle_server import ARCHIVE, empty_home, home, isolate, run_subprocess, standin  # noqa: F401

from harness.core import errors
from harness.kaggle.api import download_competition

pytestmark = [pytest.mark.kaggle]


def expected() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(ARCHIVE)) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.e2e
def test_harness_data_source_kaggle(standin, home, tmp_path):
    dest = tmp_path / "data" / "digit-recognizer"
    p = run_subprocess(standin, home, tmp_path, ["-m", "harness", "data", "--source", "kaggle", "--data-dir", str(dest)])
    assert p.returncode == 0, p.stderr
    for name, data in expected().items():
        assert (dest / name).read_bytes() == data
    assert standin.count("DownloadDataFiles") == 1
    assert not list(dest.glob("*.zip"))


def test_harness_data_source_kaggle_without_credentials(standin, empty_home, tmp_path):
    p = run_subprocess(standin, empty_home, tmp_path,
                       ["-m", "harness", "data", "--source", "kaggle", "--data-dir", str(tmp_path / "d")])
    assert p.returncode == 10, p.stderr
    assert standin.requests == []


def test_download_unzips_the_three_files(isolate, standin, home, tmp_path):
    isolate(home)
    dest = tmp_path / "d"
    download_competition(dest)
    assert {f.name: f.read_bytes() for f in dest.iterdir()} == expected()  # no zip, no temp left
    (get,) = [r for r in standin.requests if r.endpoint == "ZIP"]
    assert get.host == "storage.localhost" and get.authorization is None  # credentials stay with Kaggle


@pytest.mark.parametrize("status,error", [
    (401, errors.KaggleAuthError), (403, errors.KaggleRulesNotAccepted), (404, errors.KaggleNotFound),
    (500, errors.KaggleServerError)])
def test_download_errors(isolate, standin, home, tmp_path, status, error):
    isolate(home)
    standin.fail("DownloadDataFiles", status)
    dest = tmp_path / "d"
    with pytest.raises(error) as info:
        download_competition(dest)
    assert "\n" not in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_of_a_broken_archive_leaves_nothing(isolate, standin, home, tmp_path):
    isolate(home)
    standin.data_zip = b"PK not really a zip"
    dest = tmp_path / "d"
    with pytest.raises(errors.KaggleError, match="not a valid zip"):
        download_competition(dest)
    assert list(dest.iterdir()) == []


def test_download_of_an_archive_without_the_files(isolate, standin, home, tmp_path):
    isolate(home)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train.csv", "label\n")
    standin.data_zip = buf.getvalue()
    with pytest.raises(errors.KaggleError, match="lacks test.csv, sample_submission.csv"):
        download_competition(tmp_path / "d")


def test_download_hang_times_out(isolate, standin, home, tmp_path):
    isolate(home, HARNESS_KAGGLE_TIMEOUT="0.5")
    standin.fail("DownloadDataFiles", hang=True)
    with pytest.raises(errors.KaggleNetworkError, match="timed out"):
        download_competition(tmp_path / "d")
