"""download.py against a local HTTP server serving generated archives in the official formats."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from data_prep import download
from data_prep.sources import SOURCES, RemoteFile
from tests.data import fixtures
from tests.data_prep.http_server import serve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cub_archive(tmp_path):
    fixtures.make_cub(str(tmp_path / "src"))
    archive = tmp_path / "served" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "CUB_200_2011", arcname="CUB_200_2011")
    data = archive.read_bytes()
    remote = RemoteFile(
        name="CUB_200_2011.tgz",
        urls=(),
        size=len(data),
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return archive, remote


def test_download_verifies_and_extracts_a_cub_archive(tmp_path, monkeypatch):
    archive, remote = _cub_archive(tmp_path)
    monkeypatch.setitem(SOURCES, "cub", (remote,))
    root = tmp_path / "root"
    with serve(archive.parent) as server:
        download.download_dataset("cub", str(root), mirror=server.url, progress=False)
    assert (root / "CUB_200_2011" / "images.txt").is_file()
    assert not (root / "CUB_200_2011.tgz.part").exists()
    listed = (root / "CUB_200_2011" / "images.txt").read_text().split()[1::2]
    assert len(listed) == 36 and all((root / "CUB_200_2011" / "images" / p).is_file() for p in listed)
    # a second run finds the verified archive and the extracted tree: no request
    with serve(archive.parent) as server:
        download.download_dataset("cub", str(root), mirror=server.url, progress=False)
        assert server.requests == []


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    archive, remote = _cub_archive(tmp_path)
    root = tmp_path / "root"
    half = len(archive.read_bytes()) // 2
    with serve(archive.parent, cut_after=half) as server:
        with pytest.raises(download.DownloadError, match="place it at"):
            download.download_file(remote, str(root), mirror=server.url, progress=False)
    part = root / "CUB_200_2011.tgz.part"
    assert part.stat().st_size == half
    with serve(archive.parent) as server:
        path = download.download_file(remote, str(root), mirror=server.url, progress=False)
        assert server.requests == [("CUB_200_2011.tgz", f"bytes={half}-")]
    assert open(path, "rb").read() == archive.read_bytes()


def test_server_ignoring_range_restarts_the_file(tmp_path):
    archive, remote = _cub_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "CUB_200_2011.tgz.part").write_bytes(b"garbage that is not the archive start")
    with serve(archive.parent, honour_range=False) as server:
        path = download.download_file(remote, str(root), mirror=server.url, progress=False)
    assert open(path, "rb").read() == archive.read_bytes()


def test_checksum_mismatch_is_reported_and_the_file_set_aside(tmp_path):
    archive, remote = _cub_archive(tmp_path)
    wrong = RemoteFile(name=remote.name, urls=(), md5="0" * 32)
    with serve(archive.parent) as server:
        with pytest.raises(download.ChecksumError, match="MD5 .* expected 0000"):
            download.download_file(wrong, str(tmp_path / "root"), mirror=server.url, progress=False)
    assert (tmp_path / "root" / "CUB_200_2011.tgz.bad").exists()
    assert not (tmp_path / "root" / "CUB_200_2011.tgz").exists()


def test_offline_failure_says_which_file_to_place_where(tmp_path):
    remote = SOURCES["cars196"][1]
    dead = RemoteFile(name=remote.name, urls=("http://127.0.0.1:9/cars_annos.mat",), md5=remote.md5, extract=False)
    with pytest.raises(download.DownloadError) as info:
        download.download_file(dead, str(tmp_path), timeout=2, progress=False)
    message = str(info.value)
    assert f"place it at {tmp_path / 'cars_annos.mat'}" in message and remote.md5 in message
    # a file placed by hand is verified, not downloaded
    (tmp_path / "cars_annos.mat").write_bytes(b"not the real file")
    with pytest.raises(download.ChecksumError, match="cars_annos.mat"):
        download.download_file(dead, str(tmp_path), progress=False)


def test_zip_extraction_and_path_traversal_refused(tmp_path):
    fixtures.make_sop(str(tmp_path / "src"))
    good = tmp_path / "Stanford_Online_Products.zip"
    with zipfile.ZipFile(good, "w") as z:
        for folder, _, files in os.walk(tmp_path / "src"):
            for name in files:
                full = os.path.join(folder, name)
                z.write(full, os.path.relpath(full, tmp_path / "src"))
    download.extract_archive(str(good), str(tmp_path / "out"), progress=False)
    assert (tmp_path / "out" / "Stanford_Online_Products" / "Ebay_train.txt").is_file()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escaped.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        download.extract_archive(str(evil), str(tmp_path / "out2"), progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    evil_tar = tmp_path / "evil.tgz"
    with tarfile.open(evil_tar, "w:gz") as tar:
        member = tarfile.TarInfo("CUB_200_2011/../../escaped.txt")
        member.size = 1
        tar.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="outside"):
        download.extract_archive(str(evil_tar), str(tmp_path / "out3"), progress=False)


def test_cli_reports_a_size_mismatch_against_the_official_values(tmp_path):
    archive, _ = _cub_archive(tmp_path)
    with serve(archive.parent) as server:
        result = subprocess.run(
            [sys.executable, "-m", "data_prep.download", "--dataset=cub", f"--root={tmp_path / 'root'}",
             f"--mirror={server.url}", "--noprogress"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert "expected 1150585339" in result.stderr
