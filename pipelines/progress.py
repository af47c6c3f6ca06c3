"""A live elapsed-time line for the long steps of a command.

On a terminal the line is redrawn in place twice a second and erased at the end. Anywhere else
(CI logs, `make demo | tee`) a carriage-return bar would leave hundreds of fragments, so the
line is printed once per `heartbeat_s` instead, and not at all for a step that ends sooner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_S = 0.5
HEARTBEAT_S = 60.0


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Ticker:
    """`with Ticker(describe, stream):` shows `describe()` and the seconds elapsed while the
    block runs. `describe` is called from a background thread (a failing one shows
    "working": the line must never stop the command)."""

    def __init__(
        self,
        describe: Callable[[], str],
        stream: TextIO,
        heartbeat_s: float = HEARTBEAT_S,
        terminal: bool | None = None,
        redraw_s: float = REDRAW_S,
    ) -> None:
        self.describe = describe
        self.stream = stream
        self.terminal = is_terminal(stream) if terminal is None else terminal
        self.interval = redraw_s if self.terminal else heartbeat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def __enter__(self) -> Ticker:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.terminal:
            self._write("\r\033[K")

    def line(self) -> str:
        try:
            what = self.describe()
        except Exception:  # e.g. a folder that vanished while it was being read
            what = "working"
        return f"  ... {what} ({time.perf_counter() - self._started:.0f} s)"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.terminal:
                self._write(f"\r\033[K{self.line()}")
            else:
                self._write(f"{self.line()}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
