"""Content hashes and code version: what a run manifest and a cache key are made of.

Only the standard library here, so a cache hit costs milliseconds, not library imports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from dataclasses import dataclass
from pathlib import Path

RUN_MANIFEST_FILE = "run_manifest.json"
_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (relative paths and contents, sorted).

    A directory's run manifest is left out: it records when and where, not what; so are
    Python byte-code caches.
    """
    path = Path(path)
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path).as_posix()
        if relative == RUN_MANIFEST_FILE or "__pycache__" in file.parts:
            continue
        digest.update(relative.encode() + b"\0" + _file_digest(file).encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class CodeVersion:
    package: str
    git_sha: str | None
    # hash of the components package's source: what the cache key trusts
    source_hash: str


def code_version(component: str | None = None) -> CodeVersion:
    """Package version, git SHA and a hash of the source that `component` runs: its own
    folder plus everything shared (other components' folders are left out, so editing push
    does not invalidate validate's cache). Without a component: the whole package."""
    package_dir = Path(__file__).resolve().parent
    try:
        version = importlib.metadata.version("portside")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    others = {p.parent.name for p in package_dir.glob("*/spec.py")} - {component}
    digest = hashlib.sha256()
    for file in sorted(package_dir.rglob("*.py")):
        relative = file.relative_to(package_dir)
        if component is not None and relative.parts[0] in others:
            continue
        digest.update(relative.as_posix().encode() + file.read_bytes())
    return CodeVersion(version, _git_sha(package_dir), digest.hexdigest())


def _git_sha(directory: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
