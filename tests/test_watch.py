"""`run.py watch`: a real watcher process (watchdog, real files) keeps the index in line with the library: a copy in
progress (a slow writer) is indexed only once complete, a `.part` file never, a rename moves the episode, a vanished
file goes, Ctrl-C stops it cleanly and a restart takes in what landed meanwhile; a burst of 100 files (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from animeback.config import load_settings
from animeback.ingest.library import scan_library
from animeback.ingest.watch import Settler
from animeback.sources.synthetic import make_episode
from animeback.stores import EpisodeStatus
from animeback.stores.host import connect
from tests.conftest import ROOT

SETTLE_S = 1.5


def test_a_file_is_ready_once_it_has_stood_still(tmp_path):
    (tmp_path / "s").mkdir()
    path = tmp_path / "s" / "a.mp4"
    path.write_bytes(b"x" * 10)
    now = [time.time()]
    settler = Settler(5.0, clock=lambda: now[0])
    look = lambda: next(f for f in scan_library(tmp_path).files)  # noqa: E731
    assert not settler.ready(look())  # just written
    now[0] += 6
    assert settler.ready(look())  # untouched for 6 s
    with open(path, "ab") as out:
        out.write(b"more")  # a writer goes on: size and mtime move
    os.utime(path, (now[0] - 60, now[0] - 60))  # even with an old mtime (cp -p sets it at the end)...
    assert not settler.ready(look())  # ...a size unlike the last look's is not ready
    assert settler.ready(look())  # the same size and time again: it stood still between the looks


class Watcher:
    """`run.py watch` on a library of its own, and a view of its catalogue."""

    def __init__(self, tmp: Path):
        self.tmp, self.library = tmp, tmp / "library"
        config = {
            "library_dir": str(self.library),
            "data_dir": str(tmp / "data"),
            "process": {"watch_settle_s": SETTLE_S, "watch_rescan_s": 3.0},
            "stores": {"host_idle_s": 5},
        }
        (tmp / "config.json").write_text(json.dumps(config))
        self.env = {**os.environ, "ANIMEBACK_CONFIG": str(tmp / "config.json"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.settings = load_settings(tmp / "config.json")
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log = open(self.tmp / f"watch-{self.runs}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "watch"],
            env=self.env,
            cwd=self.tmp,
            stdout=self.log,
            stderr=self.log,
        )

    def stop(self) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code, (self.tmp / f"watch-{self.runs}.log").read_text()

    def records(self) -> dict:
        store = connect(self.settings)
        try:
            return {r.relpath: r for r in store.catalogue.episodes()}
        finally:
            store.close()

    def wait_for(self, check, timeout: float = 180.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, (
                self.tmp / f"watch-{self.runs}.log"
            ).read_text()
            records = self.records()
            if check(records):
                return records
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}: {sorted(self.records())}")


def _indexed(records: dict, relpath: str) -> bool:
    return relpath in records and records[relpath].status == EpisodeStatus.INDEXED


@pytest.mark.live
def test_watch_follows_the_library(tmp_path, library_template):
    watcher = Watcher(tmp_path)
    shutil.copytree(library_template, watcher.library)
    watcher.start()
    try:
        start = watcher.wait_for(lambda r: sum(_indexed(r, p) for p in r) == 3, what="the first pass")

        # a slow writer: the copy takes about 4 s; nothing of it is indexed before it is complete
        source = make_episode(tmp_path / "source" / "ep3.mp4", seed=31, duration=8.0)
        target = watcher.library / "101" / "[Sub] Show One - 03 [1080p].mp4"
        data = source.read_bytes()
        writer = threading.Thread(target=_write_slowly, args=(target, data, 8, 0.5))
        writer.start()
        seen_early = []
        while writer.is_alive():
            if "101/" + target.name in watcher.records():
                seen_early.append(time.monotonic())
            time.sleep(0.2)
        writer.join()
        assert not seen_early, "a file was indexed while it was still being written"
        (watcher.library / "101" / "[Sub] Show One - 04 [1080p].mp4.part").write_bytes(data[:1000])
        records = watcher.wait_for(lambda r: _indexed(r, "101/" + target.name), 60, "the copied episode")
        record = records["101/" + target.name]
        assert record.content_hash == hashlib.sha256(data).hexdigest() and record.frames_kept > 0
        assert not any(p.endswith(".part") for p in records)

        # a rename moves the episode; a deleted file goes
        old = "Other Show/Other Show EP03.webm"
        (watcher.library / old).rename(watcher.library / "Other Show" / "Other Show EP04.webm")
        (watcher.library / "101" / "[Sub] Show One - 02 [1080p].mkv").unlink()
        records = watcher.wait_for(
            lambda r: (
                _indexed(r, "Other Show/Other Show EP04.webm")
                and old not in r
                and "101/[Sub] Show One - 02 [1080p].mkv" not in r
            ),
            60,
            "the rename and the removal",
        )
        assert records["Other Show/Other Show EP04.webm"].episode == 4 and len(records) == 3
        assert {r.id for r in records.values()}.isdisjoint({start[old].id})
    finally:
        code, log = watcher.stop()
    assert code == 0 and "watch stopped" in log, log
    assert "Traceback" not in log and "still being written" in log, log

    # what lands while it is stopped is taken in when it starts again
    make_episode(watcher.library / "101" / "[Sub] Show One - 05 [1080p].mp4", seed=35, duration=6.0)
    os.utime(watcher.library / "101" / "[Sub] Show One - 05 [1080p].mp4", (time.time() - 60, time.time() - 60))
    watcher.start()
    try:
        records = watcher.wait_for(lambda r: _indexed(r, "101/[Sub] Show One - 05 [1080p].mp4"), what="the restart")
        assert len(records) == 4 and all(r.status == EpisodeStatus.INDEXED for r in records.values())
    finally:
        code, log = watcher.stop()
    assert code == 0, log


def _write_slowly(path: Path, data: bytes, pieces: int, pause_s: float) -> None:
    size = -(-len(data) // pieces)
    with open(path, "wb") as out:
        for start in range(0, len(data), size):
            out.write(data[start : start + size])
            out.flush()
            time.sleep(pause_s)


@pytest.mark.live
@pytest.mark.slow
def test_a_burst_of_100_files_is_indexed_once_each(tmp_path):
    watcher = Watcher(tmp_path)
    watcher.library.mkdir()
    staging = tmp_path / "staging" / "burst"
    for k in range(100):
        make_episode(staging / f"Burst - {k + 1:03d}.mp4", seed=1000 + k, duration=1.5, size=(160, 90), audio=False)
    watcher.start()
    try:
        time.sleep(3)
        shutil.copytree(staging, watcher.library / "burst")  # a season copied in at once
        records = watcher.wait_for(lambda r: sum(_indexed(r, p) for p in r) == 100, timeout=900, what="100 episodes")
        assert sorted(r.episode for r in records.values()) == list(range(1, 101))
        assert len({r.content_hash for r in records.values()}) == 100
    finally:
        code, log = watcher.stop()
    assert code == 0 and "Traceback" not in log, log
