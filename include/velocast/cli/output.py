"""What ``velocast`` commands write: results as JSON on stdout, progress on stderr.

Results go to stdout alone so that they pipe to ``jq``; progress and messages meant for a person
go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


def print_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout (dates and paths as strings; NaN refused)."""
    print(json.dumps(payload, indent=2, default=str, allow_nan=False))


class StepProgress:
    """``progress(step, fraction)`` for ``run_training``: tqdm on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, use_tqdm: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self._bar: Any = None
        if use_tqdm is None:
            use_tqdm = self.stream.isatty()
        if use_tqdm:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional: plain lines do
                pass
            else:
                self._bar = tqdm(total=100, file=self.stream, bar_format="{l_bar}{bar}| {elapsed}")

    def __call__(self, step: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.set_description_str(step)
            self._bar.update(round(fraction * 100) - self._bar.n)
            if fraction >= 1:
                self._bar.close()
            return
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:7.1f}s] {fraction:4.0%} {step}", file=self.stream, flush=True)


__all__ = ["StepProgress", "print_json"]
