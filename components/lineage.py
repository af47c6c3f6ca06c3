"""Content hashes and code version: what a run manifest and a cache key are made of.

Only the standard library here, so a cache hit costs milliseconds, not library imports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUN_MANIFEST_FILE = "run_manifest.json"
_CHUNK = 1 << 20
PACKAGE_DIR = Path(__file__).resolve().parent
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


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
    # What the cache key trusts: the source of the whole `components` package, and the
    # interpreter plus every installed distribution.
    source_hash: str
    environment_hash: str


def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 of every file of the package (byte code left out).

    The whole package, not one component's import closure: components import each other
    (evaluate uses push's registry and features' layout) and load code by name at run time
    (specs, implementations, revalidation hooks), which a static closure would miss.
    """
    digest = hashlib.sha256()
    for file in sorted(package_dir.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            relative = file.relative_to(package_dir).as_posix()
            digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def installed_distributions() -> tuple[str, ...]:
    """Sorted `name==version` of every distribution on sys.path, as importlib.metadata sees
    them, read from the `.dist-info`/`.egg-info` folder names: about 1 ms instead of the
    ~0.4 s that reading every METADATA file costs, so a cache hit stays fast."""
    found = set()
    for entry in dict.fromkeys(sys.path):
        try:
            with os.scandir(entry or ".") as listing:
                folders = [f for f in listing if f.name.endswith(_METADATA_SUFFIXES)]
        except OSError:  # a zip file, a missing folder: holds no installed distribution here
            continue
        found.update(_name_and_version(Path(folder.path)) for folder in folders)
    return tuple(sorted(found))


def _name_and_version(folder: Path) -> str:
    stem = folder.name.rsplit(".", 1)[0]
    name, _, rest = stem.partition("-")
    version = rest.split("-")[0]  # egg-info may add -pyX.Y
    if not version:  # a legacy folder without a version in its name: read its metadata
        version = importlib.metadata.Distribution.at(folder).version or "?"
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def environment_hash() -> str:
    """sha256 of the interpreter version and the installed distributions: an upgrade of
    TensorFlow, GX or Feast (or of anything they use) makes every cached result stale."""
    payload = "\n".join((sys.version, *installed_distributions()))
    return hashlib.sha256(payload.encode()).hexdigest()


def code_version() -> CodeVersion:
    """Package version, git SHA, and the source and environment hashes of this process."""
    try:
        version = importlib.metadata.version("portside")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return CodeVersion(version, _git_sha(PACKAGE_DIR), source_hash(), environment_hash())


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
