"""The project's code imports itself only as `portside.*`: installed, `components`, `pipelines`
and `synthetic_data` are a user's own names (pyproject.toml installs ours under portside/), and
in a checkout a module imported under both names would exist twice."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT

NAMES = "(components|pipelines|synthetic_data)"
# Also inside strings: generated component code and `python -c` probes import modules too.
BARE_FROM = re.compile(rf"(?<![.\w])from {NAMES}[ .]")
# a bare name imported alone, or later in a list of imported modules
BARE_IMPORT = re.compile(rf"(?<![.\w])import (?:[\w.]+(?: as \w+)?, )*{NAMES}\b")
BARE_STRING = re.compile(rf"[\"']{NAMES}\.\w")


def _python_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.split("\0") if name]


def test_no_module_imports_the_bare_package_names():
    offenders = []
    for name in _python_files():
        text = (ROOT / name).read_text()
        found = [*BARE_FROM.finditer(text), *BARE_STRING.finditer(text)]
        found += [  # a bare-name import statement; kfp's own module of that name is not one
            m
            for m in BARE_IMPORT.finditer(text)
            if not re.search(r"from [\w.]+ $", text[text.rfind("\n", 0, m.start()) + 1 : m.start()])
        ]
        offenders += [f"{name}: {m.group(0)}" for m in found]
    assert offenders == []


def test_the_checkout_and_the_names_resolve_to_the_repository_folders():
    import portside.components
    import portside.pipelines.cli
    import portside.synthetic_data

    assert portside.components.__file__ == str(ROOT / "components" / "__init__.py")
    assert portside.pipelines.cli.__file__ == str(ROOT / "pipelines" / "cli.py")
    assert portside.synthetic_data.__file__ == str(ROOT / "synthetic_data" / "__init__.py")
