"""A lease lock inside an MLflow registry, for the read-check-write steps of promotion.

MLflow has no compare-and-swap on aliases or tags. Its one atomic primitive is creating a
registered model: the name is a unique key, so of two creators one gets RESOURCE_ALREADY_EXISTS
(SQLite, and PostgreSQL behind `mlflow server`, alike). The lock is a sequence of such names,
`<model>.portside-lock.<n>`; holding it means having created the highest n. A slot is taken
only after the one below it is released, expired, or held by a process known to be dead, and
slots are never renamed or rewritten by anyone but their holder, so breaking a stale lock needs
no delete that could hit a fresh one:

  acquire: read the highest slot n; if it is free, create n + 1 (unique); then re-read: if a
           higher slot exists, this process raced on a stale view (a garbage-collected slot):
           drop its slot and start again;
  release: tag the own slot released (only its holder ever writes it);
  check:   before each write, the holder confirms its slot is still the highest and unexpired.

A holder killed with SIGKILL blocks others until its lease expires, or at once when it ran on
this host (same host name and PID namespace) and its process is gone. A holder stalled past its
lease can still write once after it lost the lock (no backend fencing); the lease is long next
to the seconds the critical section takes, and `check()` runs right before each write.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from portside.components.errors import PortsideError

LOCK_INFIX = ".portside-lock."
DEFAULT_LEASE_S = 120.0
DEFAULT_WAIT_S = 300.0
MARGIN_S = 5.0  # a holder stops writing this long before its lease ends
OWNER, HOST, PROCESS, EXPIRES, RELEASED = (
    "portside.lock.owner",
    "portside.lock.host",
    "portside.lock.process",
    "portside.lock.expires",
    "portside.lock.released",
)


class RegistryLockError(PortsideError):
    """The registry lock could not be taken in time, or was lost while held."""


def _process_identity(pid: int) -> str | None:
    """'<pid namespace>/<pid>/<start time>', or None when that process does not exist."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
        with open(f"/proc/{pid}/stat") as stat:  # field 22: start time in clock ticks
            started = stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{namespace}/{pid}/{started}"


def _dead_here(tags: dict[str, str]) -> bool:
    """True only when the holder ran on this host and namespace and its process is gone."""
    process = tags.get(PROCESS, "")
    if tags.get(HOST) != socket.gethostname() or process.count("/") != 2:
        return False
    namespace, pid, _ = process.split("/")
    if namespace != (_process_identity(os.getpid()) or "").split("/")[0]:
        return False
    return _process_identity(int(pid)) != process


def _free(tags: dict[str, str], now: float) -> bool:
    if tags.get(RELEASED) == "true":
        return True
    return float(tags.get(EXPIRES, "0")) <= now or _dead_here(tags)


@dataclass
class Lease:
    """The held slot; `check()` before each write, `release()` when done."""

    lock: RegistryLock
    slot: int
    owner: str
    expires: float

    def check(self) -> None:
        if time.time() > self.expires - MARGIN_S:
            raise RegistryLockError(
                f"{self.lock.describe()}: lease on slot {self.slot} ran out mid-operation; "
                "stopped before writing"
            )
        top = max(self.lock.slots(), default=0)
        if top != self.slot:
            raise RegistryLockError(
                f"{self.lock.describe()}: slot {self.slot} was taken over (now {top}); "
                "stopped before writing"
            )

    def release(self) -> None:
        self.lock.client.set_registered_model_tag(self.lock.slot_name(self.slot), RELEASED, "true")


class RegistryLock:
    """The lock named after one registered model, in the store `client` talks to."""

    def __init__(
        self,
        client: Any,
        model_name: str,
        uri: str,
        lease_s: float = DEFAULT_LEASE_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        self.client, self.model_name, self.uri = client, model_name, uri
        self.lease_s, self.wait_s = lease_s, wait_s
        self.prefix = f"{model_name}{LOCK_INFIX}"

    def describe(self) -> str:
        return f"registry lock {self.prefix}* in {self.uri}"

    def slot_name(self, slot: int) -> str:
        return f"{self.prefix}{slot}"

    def slots(self) -> dict[int, dict[str, str]]:
        """slot number -> its tags."""
        pattern = self.prefix.replace("'", "''")
        found = self.client.search_registered_models(
            filter_string=f"name LIKE '{pattern}%'", max_results=1000
        )
        slots = {}
        for model in found:  # LIKE's `_` matches any character: keep exact prefixes only
            suffix = model.name.removeprefix(self.prefix)
            if model.name.startswith(self.prefix) and suffix.isdigit():
                slots[int(suffix)] = dict(model.tags)
        return slots

    @contextmanager
    def held(self) -> Iterator[Lease]:
        lease = self.acquire()
        try:
            yield lease
        finally:
            lease.release()

    def acquire(self) -> Lease:
        deadline = time.monotonic() + self.wait_s
        delay = 0.02
        while True:
            slots = self.slots()
            top = max(slots, default=0)
            if top == 0 or _free(slots[top], time.time()):
                lease = self._try_slot(top + 1)
                if lease is not None:
                    self._collect(slots, lease.slot)
                    return lease
            elif time.monotonic() > deadline:
                holder = slots[top]
                raise RegistryLockError(
                    f"{self.describe()}: slot {top} held by {holder.get(HOST)} "
                    f"process {holder.get(PROCESS)} until {holder.get(EXPIRES)} (unix time); "
                    f"gave up after {self.wait_s:.0f} s"
                )
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def _try_slot(self, slot: int) -> Lease | None:
        from mlflow.exceptions import MlflowException

        owner, expires = uuid.uuid4().hex, time.time() + self.lease_s
        tags = {
            OWNER: owner,
            HOST: socket.gethostname(),
            PROCESS: _process_identity(os.getpid()) or f"?/{os.getpid()}/?",
            EXPIRES: f"{expires:.3f}",
        }
        try:
            self.client.create_registered_model(self.slot_name(slot), tags=tags)
        except MlflowException as error:
            # taken by another process (or deleted while the store reported the clash)
            if error.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise
        if max(self.slots(), default=0) != slot:  # created on a stale view: not ours
            self.client.delete_registered_model(self.slot_name(slot))
            return None
        return Lease(self, slot, owner, expires)

    def _collect(self, slots: dict[int, dict[str, str]], held: int) -> None:
        """Delete slots below the previous one: nobody reads them again."""
        from mlflow.exceptions import MlflowException

        for slot in sorted(s for s in slots if s < held - 1):
            try:
                self.client.delete_registered_model(self.slot_name(slot))
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
