"""seatrial.core.hash_path: the per-process memo of file digests never serves bytes that are gone."""
from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from seatrial import core
from seatrial.core import atomic_path, hash_path


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def memo(monkeypatch):
    "An empty memo that takes files written a moment ago (the tests cannot wait for them to settle)."
    monkeypatch.setattr(core, "_memo", core.OrderedDict())
    monkeypatch.setattr(core, "_SETTLED_NS", 0)
    return core._memo


def test_second_hash_comes_from_the_memo(tmp_path, memo, monkeypatch):
    f = tmp_path / "model.txt"
    f.write_bytes(b"weights")
    assert hash_path(f) == sha(b"weights") and len(memo) == 1
    monkeypatch.setattr(core, "_update_with_file", lambda h, f: pytest.fail("read again"))
    assert hash_path(f) == sha(b"weights")
    assert hash_path(tmp_path / "." / "model.txt") == sha(b"weights")   # the key is the resolved path


def test_rewrite_with_old_mtime_is_hashed_again(tmp_path, memo):
    f = tmp_path / "model.txt"
    f.write_bytes(b"weights v1")
    assert hash_path(f) == sha(b"weights v1")
    before = f.stat()
    time.sleep(0.05)   # past a tick of the filesystem's clock, so the kernel gives the write a new ctime
    f.write_bytes(b"weights v2")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = f.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert hash_path(f) == sha(b"weights v2")


def test_replaced_file_is_hashed_again(tmp_path, memo):
    f = tmp_path / "model.txt"
    f.write_bytes(b"weights v1")
    assert hash_path(f) == sha(b"weights v1")
    with atomic_path(f) as tmp: tmp.write_bytes(b"weights v2")
    assert hash_path(f) == sha(b"weights v2")


def test_fresh_files_are_not_memoised(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "_memo", core.OrderedDict())
    f = tmp_path / "new.txt"
    f.write_bytes(b"just written")
    assert hash_path(f) == sha(b"just written")
    assert not core._memo


def test_directories_hash_as_before(tmp_path, memo):
    (tmp_path / "store" / "c").mkdir(parents=True)
    (tmp_path / "store" / "zarr.json").write_bytes(b"{}")
    (tmp_path / "store" / "c" / "0").write_bytes(b"\x00\x01")
    expected = sha(b"c/0\0\x00\x01" + b"zarr.json\0{}")
    assert hash_path(tmp_path / "store") == hash_path(tmp_path / "store") == expected
    assert not memo


def test_memo_is_bounded_and_safe_across_threads(tmp_path, memo, monkeypatch):
    monkeypatch.setattr(core, "_MEMO_SIZE", 16)
    files = []
    for i in range(40):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(f"file {i}".encode())
    errors = []

    def work():
        for _ in range(3):
            for i, f in enumerate(files):
                if hash_path(f) != sha(f"file {i}".encode()): errors.append(f)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and len(memo) <= 16
