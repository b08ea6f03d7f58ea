"""Download, verify and extract the official dataset archives.

    python -m data_prep.download --dataset cub --root /data/cub
    python -m data_prep.download --dataset cars196 --root /data/cars196 --mirror http://host/files

* Partial downloads are kept as ``<name>.part`` and resumed with an HTTP
  ``Range`` request (a server that ignores it restarts the file).
* Size, MD5 and SHA-256 are checked where known (``data_prep/sources.py``); a
  mismatching file is moved to ``<name>.bad`` and reported.
* Archives are extracted with member paths checked (nothing may land outside
  ``--root``); an already-extracted dataset is not extracted again.
* Offline, or when every URL fails, the error says which file to place where
  by hand; a file placed there is verified and used.
"""

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile

from data_prep.sources import SOURCES

CHUNK = 1 << 20
DATASETS = tuple(SOURCES)
_MARKERS = {"cub": "CUB_200_2011/images.txt", "cars196": "car_ims", "sop": "Stanford_Online_Products/Ebay_train.txt"}


class DownloadError(RuntimeError):
    """A file could not be fetched; the message says how to place it by hand."""


class ChecksumError(ValueError):
    """A downloaded or placed file does not match its published size/checksum."""


def _progress(total, initial, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def file_digests(path):
    """``(md5, sha256)`` hex digests of a file, read in 1 MiB chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(path, remote):
    """Raise :class:`ChecksumError` if ``path`` differs from ``remote``'s size or checksums."""
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        raise ChecksumError(f"{path}: {size} bytes, expected {remote.size} for {remote.name}.")
    if remote.md5 or remote.sha256:
        md5, sha = file_digests(path)
        if remote.md5 and md5 != remote.md5:
            raise ChecksumError(f"{path}: MD5 {md5}, expected {remote.md5} for {remote.name}.")
        if remote.sha256 and sha != remote.sha256:
            raise ChecksumError(f"{path}: SHA-256 {sha}, expected {remote.sha256} for {remote.name}.")


def _fetch(url, part, timeout, progress, desc):
    """Append the rest of ``url`` to ``part`` (resuming from its current size)."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "symm_keras-data_prep"})
    resumable = url.startswith(("http://", "https://"))
    if have and resumable:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if have and status != 206:
            have = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = _progress(total, have, desc, progress)
        with open(part, "ab" if have else "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if total is not None and os.path.getsize(part) < total:
        raise urllib.error.URLError(f"connection closed after {os.path.getsize(part)} of {total} bytes")


def download_file(remote, root, mirror=None, timeout=60.0, progress=True):
    """Fetch ``remote`` into ``root`` (resume, verify); return the verified path.

    ``mirror``: a base URL tried first as ``mirror/<name>`` (a local copy, or
    a test server).
    """
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, remote.name)
    if os.path.exists(target):
        verify_file(target, remote)
        return target
    part = target + ".part"
    urls = ((mirror.rstrip("/") + "/" + remote.name,) if mirror else ()) + tuple(remote.urls)
    failures = []
    for url in urls:
        try:
            _fetch(url, part, timeout, progress, remote.name)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
            continue
        try:
            verify_file(part, remote)
        except ChecksumError:
            shutil.move(part, target + ".bad")
            raise
        os.replace(part, target)
        return target
    expected = ", ".join(
        f"{k} {v}" for k, v in (("size", remote.size), ("md5", remote.md5), ("sha256", remote.sha256)) if v
    )
    raise DownloadError(
        f"could not download {remote.name}:\n  " + "\n  ".join(failures) + "\n"
        f"Download it by hand and place it at {target}"
        + (f" ({expected})" if expected else "")
        + (f"; {remote.note}" if remote.note else "")
        + ", then run this command again (a partial file stays at " + part + " and is resumed)."
    )


def _safe_target(root, member_name):
    target = os.path.realpath(os.path.join(root, member_name))
    if not (target == os.path.realpath(root) or target.startswith(os.path.realpath(root) + os.sep)):
        raise ValueError(f"archive member {member_name!r} would be written outside {root}.")
    return target


def extract_archive(archive, root, progress=True):
    """Unpack a .tgz/.tar.gz/.tar/.zip into ``root``, refusing members that escape it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for member in members:
                _safe_target(root, member.filename)
            bar = _progress(len(members), 0, os.path.basename(archive), progress)
            for member in members:
                z.extract(member, root)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        return
    if not tarfile.is_tarfile(archive):
        raise ValueError(f"{archive} is neither a tar nor a zip archive.")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _safe_target(root, member.name)
            if member.issym() or member.islnk():
                _safe_target(root, os.path.join(os.path.dirname(member.name), member.linkname))
            if member.isdev():
                raise ValueError(f"archive member {member.name!r} is a device file.")
        bar = _progress(len(members), 0, os.path.basename(archive), progress)
        for member in members:
            tar.extract(member, root, set_attrs=False)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()


def download_dataset(dataset, root, mirror=None, extract=True, keep_archives=True, timeout=60.0, progress=True):
    """Download (resume, verify) and extract every official file of ``dataset`` into ``root``."""
    if dataset not in SOURCES:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    paths = []
    for remote in SOURCES[dataset]:
        path = download_file(remote, root, mirror=mirror, timeout=timeout, progress=progress)
        paths.append(path)
        if extract and remote.extract:
            if not os.path.exists(os.path.join(root, _MARKERS[dataset])):
                extract_archive(path, root, progress=progress)
            if not keep_archives:
                os.remove(path)
    return paths


def _define_flags():
    from absl import flags

    flags.DEFINE_enum("dataset", None, list(DATASETS), "Dataset to download.")
    flags.DEFINE_string("root", None, "Directory to download and extract into.")
    flags.DEFINE_string("mirror", None, "Base URL tried first (mirror/<file name>).")
    flags.DEFINE_bool("extract", True, "Extract the archives after verifying them.")
    flags.DEFINE_bool("keep_archives", True, "Keep the archives after extraction.")
    flags.DEFINE_float("timeout", 60.0, "Socket timeout in seconds.")
    flags.DEFINE_bool("progress", True, "Show tqdm progress bars.")
    flags.mark_flags_as_required(["dataset", "root"])


def main(argv):
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        paths = download_dataset(f.dataset, f.root, f.mirror, f.extract, f.keep_archives, f.timeout, f.progress)
    except (DownloadError, ChecksumError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(f"ok: {p}" for p in paths))
    print(f"next: python -m data_prep.prepare --dataset {f.dataset} --root {f.root}")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
