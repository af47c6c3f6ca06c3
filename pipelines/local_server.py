"""A server process on this machine (the prediction server, `feast serve`): started on a free
port with its output in a log file, waited for until a route answers, stopped with SIGTERM as
Kubernetes stops a pod. `portside serve --demo`, the serving benchmark and the tests use it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portside.components.errors import ConfigurationError

POLL_S = 0.5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerNotReady(ConfigurationError):
    """The server exited, refused for good, or did not answer in time; the message names its
    log."""


@dataclass
class LocalServer:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        command: list[str],
        port: int,
        log: Path,
        cwd: Path | None = None,
        own_session: bool = False,
    ) -> LocalServer:
        """Run `command` (which listens on `port`), appending its output to `log`;
        `own_session` keeps a terminal's Ctrl-C away from it."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=own_session,
            )
        return cls(process, port, log)

    def output(self, chars: int = 6000) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-chars:]

    def wait_ready(
        self,
        route: str,
        timeout_s: float,
        refuse: Callable[[int, bytes], str | None] | None = None,
    ) -> bytes:
        """The body of the first 200 answer of GET `route`. `refuse(status, body)` may name a
        reason to stop waiting on another answer (a 503 that will not go away by itself)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerNotReady(
                    f"the server exited ({self.process.returncode}); its log: {self.log}"
                )
            try:
                with urllib.request.urlopen(self.url + route, timeout=5) as answer:
                    return answer.read()
            except urllib.error.HTTPError as error:
                reason = refuse(error.code, error.read()) if refuse else None
                if reason:
                    raise ServerNotReady(reason) from None
            except OSError:
                pass  # not listening yet
            time.sleep(POLL_S)
        raise ServerNotReady(f"the server was not ready in {timeout_s:.0f} s; its log: {self.log}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (in-flight requests finish), then SIGKILL after `timeout_s`; its exit
        status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
