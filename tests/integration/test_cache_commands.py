"""`portside cache list | gc` on a cache the runtime filled, next to things that are not its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, run_cli, run_command

from portside.components.runtime import execute, temporary_path
from portside.components.spec import Artifact, ComponentSpec, Parameter

DAY = 86400
BLOB = 100_000


def write_blob(out: str, size: int = BLOB, seed: int = 0) -> dict:
    """A component whose output is `size` bytes."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "blob.bin").write_bytes(bytes([seed]) * size)
    return {"size": size}


SPEC = ComponentSpec(
    name="blob",
    doc="Writes a blob.",
    implementation="test_cache_commands:write_blob",
    outputs=(Artifact("out", "directory", "the blob"),),
    parameters=(Parameter("size", int, BLOB, ""), Parameter("seed", int, 0, "")),
)


def _dead_writers_staging(entry: Path) -> Path:
    """A staging folder named by the runtime in a process that then died."""
    code = (
        "import sys; from pathlib import Path; "
        "from portside.components.runtime import temporary_path; "
        "p = temporary_path(Path(sys.argv[1]), 'tmp'); p.mkdir(); (p / 'half').write_text('x'); "
        "print(p)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(entry)], capture_output=True, text=True, check=True
    )
    return Path(done.stdout.strip())


def _tree(root: Path) -> list[tuple[str, int]]:
    """Every file and link under root, without following links."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(directory) / d).is_symlink()]:
            path = Path(directory) / name
            found.append((str(path.relative_to(root)), path.lstat().st_size))
    return sorted(found)


@pytest.fixture
def cache(tmp_path: Path) -> dict:
    """Three entries used 3, 2 and 1 days ago, a dead and a live writer's staging folder, and
    things that are not cache entries (a file, a link to a folder outside)."""
    root = tmp_path / "cache"
    keys = []
    for age, seed in ((3, 0), (2, 1), (1, 2)):
        manifest = execute(SPEC, {"out": str(tmp_path / f"out{seed}"), "seed": seed}, root)
        entry = root / "blob" / manifest.cache_key
        os.utime(entry, (time.time() - age * DAY,) * 2)
        keys.append(manifest.cache_key)
    dead = _dead_writers_staging(root / "blob" / ("d" * 64))
    live = temporary_path(root / "blob" / ("e" * 64), "tmp")  # this test process: alive
    live.mkdir()
    outside = tmp_path / "outside"
    (outside / ("f" * 64)).mkdir(parents=True)
    (outside / ("f" * 64) / "precious.txt").write_text("not the cache's")
    (root / "notes.txt").write_text("mine")
    (root / "linked").symlink_to(outside)
    (root / "blob" / ("a" * 64)).symlink_to(outside / ("f" * 64))
    return {"root": root, "keys": keys, "dead": dead, "live": live, "outside": outside}


def _portside(*args: str) -> str:
    return run_cli([str(BIN / "portside"), "cache", *args], cwd=Path.cwd())


def _entries(root: Path) -> set[str]:
    return {p.name for p in (root / "blob").iterdir() if not p.is_symlink()}


def _foreign_intact(cache: dict, outside_before: list) -> None:
    root = cache["root"]
    assert (root / "notes.txt").read_text() == "mine"
    assert (root / "linked").is_symlink() and (root / "blob" / ("a" * 64)).is_symlink()
    assert _tree(cache["outside"]) == outside_before


def test_list_shows_every_entry_least_recently_used_first(cache):
    lines = _portside("list", "--cache-dir", str(cache["root"])).splitlines()
    assert lines[0].split() == ["component", "key", "size", "age", "status"]
    rows = [line.split() for line in lines[1:-1]]
    keys = cache["keys"]
    assert [(r[0], r[1], r[-1]) for r in rows[:3]] == [("blob", k[:12], "complete") for k in keys]
    assert [r[4] for r in rows[:3]] == ["3.0d", "2.0d", "1.0d"]
    for key, row in zip(keys, rows, strict=False):
        size = sum(size for _, size in _tree(cache["root"] / "blob" / key))
        assert BLOB < size < 2 * BLOB and row[2:4] == [f"{size / 1000:.1f}", "KB"]
    assert {(r[1], r[-1]) for r in rows[3:]} == {("d" * 12, "abandoned"), ("e" * 12, "writing")}
    assert lines[-1].startswith("5 entries, ")


def test_gc_by_age_evicts_old_and_abandoned_entries_only(cache, tmp_path):
    root, keys = cache["root"], cache["keys"]
    outside = _tree(cache["outside"])
    out = _portside("gc", "--older-than", "36h", "--cache-dir", str(root))
    assert f"removed blob/{keys[0][:12]}" in out and f"removed blob/{keys[1][:12]}" in out
    assert _entries(root) == {keys[2], cache["live"].name}
    _foreign_intact(cache, outside)
    # What is left still serves hits.
    kept = execute(SPEC, {"out": str(tmp_path / "out2"), "seed": 2}, root)
    assert kept.status == "cached"
    assert execute(SPEC, {"out": str(tmp_path / "out0"), "seed": 0}, root).status == "succeeded"


def test_gc_by_size_evicts_least_recently_used_first(cache):
    root, keys = cache["root"], cache["keys"]
    outside = _tree(cache["outside"])
    # Three entries of about 103 KB: one must go, the least recently used.
    out = _portside("gc", "--max-size", "250KB", "--cache-dir", str(root))
    assert f"removed blob/{keys[0][:12]}" in out and "cache over 250.0 KB" in out
    assert _entries(root) == {keys[1], keys[2], cache["live"].name}
    _foreign_intact(cache, outside)
    _portside("gc", "--max-size", "1B", "--cache-dir", str(root))
    assert _entries(root) == {cache["live"].name}  # a live writer's folder is never removed


def test_gc_dry_run_removes_nothing(cache):
    before = _tree(cache["root"])
    args = ("--max-size", "1B", "--older-than", "12h", "--dry-run")
    out = _portside("gc", *args, "--cache-dir", str(cache["root"]))
    assert out.count("would remove") == 5  # three entries, the abandoned one, the summary
    assert _tree(cache["root"]) == before


def test_bad_sizes_and_durations_are_usage_errors(tmp_path):
    for option, value in (("--max-size", "2XB"), ("--older-than", "soon")):
        done = run_command(
            [str(BIN / "portside"), "cache", "gc", option, value, "--cache-dir", str(tmp_path)]
        )
        assert done.returncode == 2 and f"argument {option}" in done.stderr
        assert repr(value) in done.stderr


def test_an_empty_or_missing_cache_lists_nothing(tmp_path):
    assert "no cache entries" in _portside("list", "--cache-dir", str(tmp_path / "none"))
    assert "removed 0 entries" in _portside("gc", "--cache-dir", str(tmp_path / "none"))
