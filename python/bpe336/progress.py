"""Progress reports that suit where stderr goes: a tqdm bar on a terminal, and a few plain lines
(start, every quarter, end) when stderr is a file or a pipe, so logs do not fill with redrawn bars.

    with progress_bar(total=size, desc="encode train.txt", unit="B") as bar:
        bar.update(chunk_bytes)
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

QUIET_SECONDS = 2.0


def _size(n: float, unit: str) -> str:
    """e.g. (2_500_000, "B") -> '2.5 MB', (1234, " merges") -> '1,234 merges'."""
    if unit == "B":
        for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if n >= scale:
                return f"{n / scale:.1f} {prefix}B"
        return f"{n:.0f} B"
    return f"{n:,.0f}{unit}"


class PlainProgress:
    """The tqdm subset we use (`update`, `n`, `total`, `close`, a context manager), printing one
    line at the start, at each quarter of `total` (once the job has run QUIET_SECONDS) and at the
    end."""

    def __init__(self, total: float | None, desc: str, unit: str = "B", stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.next_quarter = 1
        self.closed = False
        self._say("started" + (f" ({_size(total, unit)})" if total else ""))

    def _say(self, what: str) -> None:
        print(f"{self.desc}: {what}", file=self.stream, flush=True)

    def update(self, k: float = 1) -> None:
        self.n += k
        if not self.total:
            return
        while self.next_quarter < 4 and self.n >= self.total * self.next_quarter / 4:
            elapsed = time.perf_counter() - self.start
            if elapsed >= QUIET_SECONDS:  # a short job gets just its start and end lines
                self._say(f"{25 * self.next_quarter}% ({_size(self.n, self.unit)} of {_size(self.total, self.unit)}, {elapsed:.1f} s)")
            self.next_quarter += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._say(f"done: {_size(self.n, self.unit)} in {time.perf_counter() - self.start:.1f} s")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: float | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar when stderr is a terminal, else a `PlainProgress`. `unit` "B" scales to kB/MB."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, **scale)
    return PlainProgress(total, desc, unit)
