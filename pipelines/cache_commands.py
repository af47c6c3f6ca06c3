"""`portside cache list | gc`: what the content-addressed cache holds, and evicting from it.

Only folders laid out as the runtime writes them are ever considered:
`<cache dir>/<component>/<64 hex key>[.tmp-<host>-<pid> | .old-<host>-<pid>]`. Anything else
under the cache dir (and anything a symbolic link points to) is neither listed nor touched.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portside.components.__main__ import DEFAULT_CACHE_DIR
from portside.components.errors import ConfigurationError
from portside.components.lineage import RUN_MANIFEST_FILE
from portside.components.runtime import ENTRY_NAME, discard_entry

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class CacheEntry:
    component: str
    key: str
    path: Path
    size: int  # bytes
    last_used: float  # epoch seconds: stored, or last restored by a cache hit
    # complete: usable; writing: a live process is staging or discarding it; abandoned: its
    # writer died; incomplete: a key folder without a run manifest (never used by a run)
    status: str

    def age(self, now: float) -> float:
        return max(0.0, now - self.last_used)


@dataclass(frozen=True)
class Eviction:
    entry: CacheEntry
    reason: str


def parse_size(text: str) -> int:
    """`2GB`, `500MiB`, `1048576`: bytes (KB, MB, GB, TB are powers of 1000)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigurationError(
            f"size {text!r}: expected a number and a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """`7d`, `12h`, `30m`, `45s`, `2w`: seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match is None:
        raise ConfigurationError(f"duration {text!r}: expected a number and s, m, h, d or w")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def format_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f}{unit}"
    return f"{seconds:.0f}s"


def scan(cache_dir: str | Path) -> list[CacheEntry]:
    """Every cache entry under `cache_dir`, least recently used first."""
    root = Path(cache_dir)
    if not root.is_dir():
        return []
    entries = []
    for component in _real_dirs(root):
        for folder in _real_dirs(component):
            if match := ENTRY_NAME.match(folder.name):
                with contextlib.suppress(FileNotFoundError):  # removed by a run meanwhile
                    entries.append(_entry(component.name, folder, match))
    return sorted(entries, key=lambda e: (e.last_used, e.component, e.key))


def _real_dirs(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.is_dir() and not p.is_symlink()]


def _entry(component: str, folder: Path, match: re.Match[str]) -> CacheEntry:
    return CacheEntry(
        component=component,
        key=match.group("key"),
        path=folder,
        size=_size(folder),
        last_used=folder.lstat().st_mtime,
        status=_status(folder, match),
    )


def _status(folder: Path, match: re.Match[str]) -> str:
    pid = match.group("pid") or match.group("legacy_pid")
    if pid is None:
        return "complete" if (folder / RUN_MANIFEST_FILE).is_file() else "incomplete"
    host = match.group("host")
    if host not in (None, socket.gethostname()):
        return "writing"  # another machine's process: only age can tell
    return "writing" if _alive(int(pid)) else "abandoned"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _size(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):  # does not follow symbolic links
        for name in files:
            total += (Path(directory) / name).lstat().st_size
    return total


def plan_gc(
    entries: list[CacheEntry],
    max_size: int | None = None,
    older_than: float | None = None,
    now: float | None = None,
) -> list[Eviction]:
    """What to evict: abandoned and incomplete entries always; entries (and stale temporary
    folders) not used for `older_than` seconds; then, least recently used first, complete
    entries until the rest fits in `max_size` bytes. Live temporary folders stay."""
    now = time.time() if now is None else now
    evict: list[Eviction] = []
    kept: list[CacheEntry] = []
    for entry in entries:  # least recently used first
        if entry.status in ("abandoned", "incomplete"):
            evict.append(Eviction(entry, entry.status))
        elif older_than is not None and entry.age(now) > older_than:
            evict.append(Eviction(entry, f"unused for {format_age(entry.age(now))}"))
        else:
            kept.append(entry)
    total = sum(e.size for e in kept)
    for entry in kept:
        if max_size is None or total <= max_size:
            break
        if entry.status == "complete":
            evict.append(Eviction(entry, f"cache over {format_size(max_size)}"))
            total -= entry.size
    return evict


def gc(
    cache_dir: str | Path,
    max_size: int | None = None,
    older_than: float | None = None,
    dry_run: bool = False,
) -> list[Eviction]:
    """Evict what `plan_gc` says from `cache_dir` (nothing with `dry_run`); return it."""
    evictions = plan_gc(scan(cache_dir), max_size, older_than)
    if not dry_run:
        for eviction in evictions:
            _remove(eviction.entry)
    return evictions


def _remove(entry: CacheEntry) -> None:
    if entry.status in ("complete", "incomplete"):
        discard_entry(entry.path)  # renamed first: a concurrent run never sees half of it
    else:  # a temporary folder: no run reads it
        shutil.rmtree(entry.path, ignore_errors=True)


def _cache_list(args: argparse.Namespace) -> int:
    entries, now = scan(args.cache_dir), time.time()
    if not entries:
        print(f"no cache entries in {args.cache_dir}")
        return 0
    print(f"{'component':<12} {'key':<12} {'size':>10} {'age':>7}  status")
    for e in entries:
        print(
            f"{e.component:<12} {e.key[:12]:<12} {format_size(e.size):>10} "
            f"{format_age(e.age(now)):>7}  {e.status}"
        )
    total = format_size(sum(e.size for e in entries))
    print(f"{len(entries)} entries, {total} in {args.cache_dir}")
    return 0


def _cache_gc(args: argparse.Namespace) -> int:
    evictions = gc(args.cache_dir, args.max_size, args.older_than, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for eviction in evictions:
        e = eviction.entry
        print(f"{verb} {e.component}/{e.path.name[:12]} ({format_size(e.size)}): {eviction.reason}")
    freed = format_size(sum(e.entry.size for e in evictions))
    left = format_size(sum(e.size for e in scan(args.cache_dir)))
    print(f"{verb} {len(evictions)} entries, {freed}; {left} left in {args.cache_dir}")
    return 0


def _argument(parse: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse `type` from a parser that raises ConfigurationError (a usage error)."""

    def convert(text: str) -> float:
        try:
            return parse(text)
        except ConfigurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return convert


def add_cache_commands(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache", help="the content-addressed cache of component outputs"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, help=f"default: {DEFAULT_CACHE_DIR}"
    )
    listing = cache.add_parser(
        "list", parents=[where], help="entries: component, key, size, age, status"
    )
    listing.set_defaults(handler=_cache_list)
    collect = cache.add_parser(
        "gc", parents=[where], help="evict old entries, least recently used first"
    )
    collect.add_argument(
        "--max-size", type=_argument(parse_size), help="keep at most this much, e.g. 2GB"
    )
    collect.add_argument(
        "--older-than",
        type=_argument(parse_duration),
        help="evict entries unused this long, e.g. 7d",
    )
    collect.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    collect.set_defaults(handler=_cache_gc)
