"""`watch`: keep the index in line with the library as files land, change and vanish, until stopped.

File events (watchdog: inotify, or polling for network mounts) only wake the loop; each pass is a normal
`process` run, so everything `process` guarantees holds (resumable, no duplicates, the writer lock shared with
`process` and `download-bilibili --process`, removal safety). A new or changed file is indexed only once it has
stood still for `process.watch_settle_s`: a copy or download in progress is never indexed half-done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import AnimeBackError, IndexBusyError, LibraryError
from ..index import Index
from .indexer import ProcessReport, process_library
from .library import EpisodeFile

log = logging.getLogger(__name__)

BUSY_RETRY_S = 5.0  # another writer (`process`, a download) holds the index: try again this soon


class Settler:
    """Tells whether a file is complete: its size and modification time unchanged for settle_s."""

    def __init__(self, settle_s: float, clock: Callable[[], float] = time.time):
        self.settle_s, self.clock = settle_s, clock
        self._seen: dict[str, tuple[int, int]] = {}  # relpath -> (size, mtime_ns) at the last look

    def ready(self, file: EpisodeFile) -> bool:
        """True when the file has not been written to for settle_s (a writer moves its mtime on every write) and
        its size is the one seen at the last look."""
        last = self._seen.get(file.relpath)
        self._seen[file.relpath] = (file.size, file.mtime_ns)
        still = self.clock() - file.mtime_ns / 1e9 >= self.settle_s
        return still and (last is None or last == (file.size, file.mtime_ns))


def watch_library(
    index: Index,
    stop: threading.Event,
    on_pass: Callable[[ProcessReport], None] | None = None,
) -> None:
    """Run `process` passes whenever the library changes (and every process.watch_rescan_s), until `stop` is set."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    settings = index.settings.process
    library = index.settings.library_path
    if not library.is_dir():
        raise LibraryError(f"the library folder {library} does not exist (library_dir)")
    woken = threading.Event()

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            woken.set()

    observer = PollingObserver(timeout=min(settings.watch_rescan_s, 5.0)) if settings.watch_polling else Observer()
    observer.schedule(Wake(), str(library), recursive=True)
    observer.start()
    settler = Settler(settings.watch_settle_s)
    waiting = 0  # files left for later at the last pass: said once, not at every pass
    log.info("watching %s (%s)", library, "polling" if settings.watch_polling else "file events")
    try:
        while not stop.is_set():
            woken.clear()
            wait = settings.watch_rescan_s
            try:
                report = process_library(index, progress=False, ready=settler.ready)
            except IndexBusyError as exc:
                log.info("%s; trying again in %.0f s", exc.message, BUSY_RETRY_S)
                wait = BUSY_RETRY_S
            except AnimeBackError as exc:  # an unmounted library, too many files gone: said, and waited out
                log.error("%s", exc.message)
            else:
                if report.changed_anything:
                    log.info("%s", report.summary())
                elif report.waiting and report.waiting != waiting:
                    log.info("waiting for %d file(s) still being written", report.waiting)
                waiting = report.waiting
                if on_pass is not None:
                    on_pass(report)
                if report.waiting:  # look again once the files being written may have settled
                    wait = max(0.2, settings.watch_settle_s / 2)
            if _wait_for_change(woken, stop, wait):
                # a burst (a season copied in) sends many events: let it run on a moment, then take it in one pass
                time.sleep(min(1.0, settings.watch_settle_s))
    finally:
        observer.stop()
        observer.join(timeout=10)


def _wait_for_change(woken: threading.Event, stop: threading.Event, seconds: float) -> bool:
    """Wait until a file event, a stop or the time is up; True when woken by a file event."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if woken.wait(min(left, 0.5)):
            return True
    return False
