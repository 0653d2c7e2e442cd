"""Downloads against a local HTTP server on 127.0.0.1: resume after an interrupted transfer, checksum
failure, and ``textseg data download`` through ``--mirror`` (archive -> extraction -> layout)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from textseg.benchmarks._layout import Archive
from textseg.cli import main
from textseg.download import DownloadError, download
from textseg.registry import BENCHMARKS


class Server:
    """Serves ``files`` with HTTP Range support; ``cut`` makes the next response stop halfway."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = (
                    int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                )
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut:
                    server.cut = False
                    payload = payload[: len(payload) // 2]  # then the connection closes
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, a few chunks


def test_interrupted_transfer_resumes(server: Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    server.cut = True
    dest = tmp_path / "data.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(
        DownloadError, match=r"interrupted after 524288 of 1048576 bytes.*run the same command"
    ):
        download(f"{server.url}/data.bin", dest, sha256=sha)
    assert not dest.exists() and (tmp_path / "data.bin.part").stat().st_size == len(PAYLOAD) // 2
    assert download(f"{server.url}/data.bin", dest, sha256=sha) == dest
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    assert server.requests[-1] == ("data.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_checksum_failure_keeps_nothing(server: Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=r"md5 is .* expected 0+; the partial file was removed"):
        download(f"{server.url}/data.bin", dest, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_sha1_is_checked_too(server: Server, tmp_path: Path) -> None:
    server.files["a.json"] = b"{}"
    archive = Archive("a.json", "http://unused.invalid/a.json", extract_to=None, sha1="1" * 40)
    with pytest.raises(DownloadError, match="sha1 does not match"):
        archive.fetch(tmp_path, mirror=server.url)
    assert not (tmp_path / "a.json").exists()


@pytest.fixture
def ade_from_mirror(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A copy of ``ade20k`` registered as a plugin whose archive checksum is that of a small zip."""
    ade = BENCHMARKS.get("ade20k")
    tree = tmp_path / "tree"
    ade.layout.write_synthetic_raw(tree, 150, 3)
    zipped = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(zipped, "w") as handle:
        for path in sorted(tree.rglob("*")):
            handle.write(path, path.relative_to(tree))
    data = zipped.read_bytes()
    archive = dataclasses.replace(ade.layout.archives[0], sha256=hashlib.sha256(data).hexdigest(), sha1=None)
    layout = dataclasses.replace(ade.layout, benchmark="ade_mirror", archives=(archive,))
    BENCHMARKS.register("ade_mirror", dataclasses.replace(ade, name="ade_mirror", layout=layout))
    yield "ade_mirror", data
    BENCHMARKS.unregister("ade_mirror")


def test_cli_download_through_mirror(
    server: Server, ade_from_mirror: tuple[str, bytes], tmp_path: Path
) -> None:
    name, data = ade_from_mirror
    server.files["ADEChallengeData2016.zip"] = data
    server.cut = True
    out = tmp_path / "data"
    args = ["data", "download", name, "--out", str(out), "--mirror", server.url, "--workers", "1"]
    assert main(args) == 2  # interrupted: the part file stays
    assert main([*args, "--allow-subset"]) == 0  # resumed, verified, unpacked, prepared
    assert [s.id for s in BENCHMARKS.get(name).samples(out)] == [f"ADE_val_{k:08d}" for k in (1, 2, 3)]
    assert (out / "downloads" / "ADEChallengeData2016" / "objectInfo150.txt").is_file()
    requests = len(server.requests)
    assert main([*args, "--allow-subset"]) == 0
    assert len(server.requests) == requests  # verified copy on disk: nothing fetched again


def test_cli_download_bad_checksum(
    server: Server, ade_from_mirror: tuple[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, data = ade_from_mirror
    server.files["ADEChallengeData2016.zip"] = data[:-1] + b"x"
    assert main(["data", "download", name, "--out", str(tmp_path), "--mirror", server.url]) == 2
    assert "sha256 is" in capsys.readouterr().err
    assert not any((tmp_path / "downloads").iterdir())


def test_mirror_from_environment(
    server: Server, ade_from_mirror: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, data = ade_from_mirror
    server.files["ADEChallengeData2016.zip"] = data
    monkeypatch.setenv("TEXTSEG_DATA_MIRROR", server.url + "/")
    assert main(["data", "download", name, "--out", str(tmp_path), "--no-prepare"]) == 0
    assert server.requests == [("ADEChallengeData2016.zip", None)]
    assert (tmp_path / "downloads" / "ADEChallengeData2016" / "annotations" / "validation").is_dir()


def test_cityscapes_download_explains_the_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "download", "cityscapes", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        "needs a login" in err
        and "gtFine_trainvaltest.zip" in err
        and "textseg data prepare cityscapes" in err
    )
