"""What each worker process serves, on a board every worker of the sidecar can read.

uvicorn's workers share one listening socket and the kernel picks which one accepts a connection,
so a caller cannot ask a given worker what it serves. Instead every worker, after each registry
check (``ModelStore.refresh``), writes ``<pid>.json`` (its env, the run id it serves per model
type, when) to a directory only the workers of the same server share:
``<state_dir>/serving-workers/<port>-<server pid>``, the server pid being uvicorn's supervisor (the
workers' parent process) or, with a single worker, the worker itself. Any worker
reads the whole board for ``GET /model_summary``, so one answer tells whether a promotion has
reached every worker. A file older than a few reload intervals, or of a process that is gone, is
a worker that no longer serves: it is left out and removed.

Files are written atomically (a temporary file renamed over the old one).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Final

from velocast.settings import VelocastSettings
from velocast_serving.model_store import StoreSnapshot

log = logging.getLogger(__name__)

# A worker that has not written for this many reload intervals (and at least MIN_STALE_SECONDS) is gone.
STALE_INTERVALS: Final = 3
MIN_STALE_SECONDS: Final = 15.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def server_pid() -> int:
    """uvicorn's supervisor when it spawned this worker (``--workers N``), else this process."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getpid()


class WorkerBoard:
    def __init__(self, directory: Path, reload_interval_seconds: float) -> None:
        self.directory = directory
        self.stale_seconds = max(MIN_STALE_SECONDS, STALE_INTERVALS * reload_interval_seconds)

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> WorkerBoard:
        directory = settings.state_dir / "serving-workers" / f"{settings.serving_port}-{server_pid()}"
        return cls(directory, settings.serving_reload_interval_seconds)

    def publish(self, snapshot: StoreSnapshot) -> None:
        """This worker's line: what it serves now. Best effort (a full disk must not stop serving)."""
        pid = os.getpid()
        record = {
            "pid": pid,
            "env": snapshot.env,
            "served": {model_type: m.entry.run_id for model_type, m in snapshot.models.items()},
            "updated_at": time.time(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = self.directory / f".{pid}.json.tmp"
            temporary.write_text(json.dumps(record), encoding="utf-8")
            temporary.replace(self.directory / f"{pid}.json")
        except OSError as error:
            log.warning("cannot publish what this worker serves in %s: %s", self.directory, error)

    def withdraw(self) -> None:
        """This worker stops serving (shutdown)."""
        (self.directory / f"{os.getpid()}.json").unlink(missing_ok=True)

    def read(self) -> list[dict[str, Any]]:
        """The live workers' lines, by pid."""
        now = time.time()
        lines = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                pid = int(record["pid"])
                fresh = now - float(record["updated_at"]) <= self.stale_seconds
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced, or not ours
            if fresh and _alive(pid):
                lines.append(record)
            else:
                path.unlink(missing_ok=True)
        return sorted(lines, key=lambda record: int(record["pid"]))


__all__ = ["WorkerBoard"]
