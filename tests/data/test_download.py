"""Download + checksum + unpack against a real HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from personarec.data.download import download_dataset
from personarec.data.movielens import load_ml_latest_small
from personarec.data.registry import DatasetSpec, locate
from personarec.errors import DataError

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,3.5,964982224\n"
MOVIES = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,Grumpier Old Men (1995),Comedy|Romance\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www over HTTP on a free local port; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-tiny/ratings.csv", RATINGS)
        zf.writestr("ml-tiny/movies.csv", MOVIES)
    return path.read_bytes()


def _spec(url: str, **checksums) -> DatasetSpec:
    return DatasetSpec("ml-tiny", load_ml_latest_small, "ml-tiny", "ratings.csv", url=url, archive_root="ml-tiny", **checksums)


def test_download_verifies_and_unpacks(server, tmp_path):
    base, www = server
    data = _zip(www / "ml-tiny.zip")
    cache = tmp_path / "cache"
    spec = _spec(f"{base}/ml-tiny.zip", md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
    target = download_dataset(spec, cache)  # with the progress bar
    assert target == cache / "ml-tiny"
    assert (target / "ratings.csv").read_text() == RATINGS
    assert sorted(p.name for p in cache.iterdir()) == ["ml-tiny"]  # no archive or temp folder left
    assert len(load_ml_latest_small(target).interactions) == 3
    (www / "ml-tiny.zip").unlink()  # a second call uses the cache, no network
    assert download_dataset(spec, cache, show_progress=False) == target


def test_checksum_mismatch_removes_file(server, tmp_path):
    base, www = server
    _zip(www / "ml-tiny.zip")
    cache = tmp_path / "cache"
    spec = _spec(f"{base}/ml-tiny.zip", md5="0" * 32)
    with pytest.raises(DataError, match=r"md5 mismatch \(expected 0{32}, got [0-9a-f]{32}\); the file was removed"):
        download_dataset(spec, cache, show_progress=False)
    assert list(cache.iterdir()) == []  # nothing downloaded or unpacked stays behind


def test_published_md5_file_is_used(server, tmp_path):
    base, www = server
    data = _zip(www / "ml-tiny.zip")
    (www / "ml-tiny.zip.md5").write_text(f"MD5 (ml-tiny.zip) = {hashlib.md5(data).hexdigest()}\n")
    spec = _spec(f"{base}/ml-tiny.zip", md5_url=f"{base}/ml-tiny.zip.md5")
    assert (download_dataset(spec, tmp_path / "c1", show_progress=False) / "movies.csv").exists()
    (www / "ml-tiny.zip.md5").write_text(f"MD5 (ml-tiny.zip) = {'f' * 32}\n")
    with pytest.raises(DataError, match="md5 mismatch"):
        download_dataset(spec, tmp_path / "c2", show_progress=False)


def test_refuses_without_checksum_and_reports_http_errors(server, tmp_path):
    base, www = server
    _zip(www / "ml-tiny.zip")
    with pytest.raises(DataError, match="no published checksum"):
        download_dataset(_spec(f"{base}/ml-tiny.zip"), tmp_path / "c", show_progress=False)
    with pytest.raises(DataError, match="404"):
        download_dataset(_spec(f"{base}/missing.zip", md5="0" * 32), tmp_path / "c", show_progress=False)


def test_zip_slip_is_refused(server, tmp_path):
    base, www = server
    with zipfile.ZipFile(www / "evil.zip", "w") as zf:
        zf.writestr("../../escape.txt", "x")
    data = (www / "evil.zip").read_bytes()
    with pytest.raises(DataError, match="outside"):
        download_dataset(_spec(f"{base}/evil.zip", md5=hashlib.md5(data).hexdigest()), tmp_path / "c", show_progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_locate_offline_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAREC_SHARED_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("PERSONAREC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not found locally.*downloading is off"):
        locate("ml-1m", download=False)
    with pytest.raises(DataError, match="has no ratings.dat"):
        locate("ml-1m", tmp_path)


def test_load_dataset_downloads_into_cache_when_missing(server, tmp_path, monkeypatch):
    from personarec.data import registry

    base, www = server
    data = _zip(www / "ml-tiny.zip")
    monkeypatch.setenv("PERSONAREC_SHARED_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("PERSONAREC_CACHE", str(tmp_path / "cache"))
    registry.get_spec("ml-100k")  # make sure the built-ins are registered first
    monkeypatch.setitem(registry.REGISTRY, "ml-tiny", _spec(f"{base}/ml-tiny.zip", md5=hashlib.md5(data).hexdigest()))
    with pytest.raises(DataError, match="downloading is off"):
        registry.load_dataset("ml-tiny", download=False)
    ds = registry.load_dataset("ml-tiny")
    assert len(ds.interactions) == 3
    assert ds.source == str(tmp_path / "cache" / "datasets" / "ml-tiny")
