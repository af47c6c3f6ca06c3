"""`portside features apply`: Feast's own `feast apply`, summarised in one or two lines.

Feast's plan says what the apply changes (registry objects, online-store tables); then Feast's
`apply_total`, the function `feast apply` calls, applies it. Feast's own output is kept and
printed only when the apply fails (or with --verbose).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from portside.components.errors import ConfigurationError

TRANSITIONS = ("created", "updated", "deleted")


@dataclass(frozen=True)
class Change:
    kind: str  # "feature view", "sqlite table", ...
    name: str
    transition: str  # created | updated | deleted | unchanged


@dataclass
class AppliedChanges:
    repo: str
    registry: list[Change] = field(default_factory=list)
    infrastructure: list[Change] = field(default_factory=list)
    feast_output: str = ""

    def summary(self) -> list[str]:
        """`feast apply <repo>: created ...; online store: ...`."""
        objects = _describe(self.registry) or "no changes"
        unchanged = sum(1 for c in self.registry if c.transition == "unchanged")
        if unchanged:
            objects += f" ({unchanged} unchanged)"
        lines = [f"feast apply {self.repo}: {objects}"]
        tables = _describe(self.infrastructure)
        if tables:
            lines.append(f"feast apply {self.repo}: online store {tables}")
        return lines


def _describe(changes: list[Change]) -> str:
    """`created 2 feature views, 1 entity; updated feature view user_profile`: counts for what
    is new, names for what changed or went away."""
    parts = []
    for transition in TRANSITIONS:
        chosen = [c for c in changes if c.transition == transition]
        if not chosen:
            continue
        if transition == "created":
            counts = Counter(c.kind for c in chosen)
            listed = ", ".join(f"{n} {_plural(kind, n)}" for kind, n in counts.items())
        else:
            listed = ", ".join(f"{c.kind} {c.name}" for c in chosen)
        parts.append(f"{transition} {listed}")
    return "; ".join(parts)


def _plural(kind: str, count: int) -> str:
    if count == 1:
        return kind
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


def apply_repo(repo_path: str | Path, skip_source_validation: bool = False) -> AppliedChanges:
    """Apply the Feast repo at `repo_path` as `feast apply` does; return what changed."""
    from feast import FeatureStore
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_config import load_repo_config
    from feast.repo_operations import _get_repo_contents, apply_total, cli_check_repo

    repo = Path(repo_path).resolve()
    if not (repo / "feature_store.yaml").is_file():
        raise ConfigurationError(f"{repo}: no feature_store.yaml; is this a Feast repo?")
    captured = io.StringIO()
    cwd = os.getcwd()
    try:
        # Feast resolves the repo's relative paths (registry, online store) from the working
        # directory, and its apply changes into the repo: so does the plan before it.
        os.chdir(repo)
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            cli_check_repo(repo, repo / "feature_store.yaml")  # puts the repo on sys.path
            config = load_repo_config(repo, repo / "feature_store.yaml")
            # As `feast apply` reads the repo: the project from feature_store.yaml if none.
            contents = _get_repo_contents(repo, config.project, config)
            registry_diff, infra_diff, _ = FeatureStore(config=config).plan(contents)
            apply_total(config, repo, skip_source_validation)
    except (Exception, SystemExit) as error:  # Feast exits on some bad repos
        raise ConfigurationError(
            f"feast apply failed in {repo}: {error}\n{captured.getvalue().strip()}"
        ) from error
    finally:
        os.chdir(cwd)
    return AppliedChanges(
        repo=str(repo_path),
        registry=[
            Change(d.feast_object_type.value, d.name, _transition(d.transition_type))
            for d in registry_diff.feast_object_diffs
            # Feast's own output omits these too: sources, and the entity it adds itself.
            if d.feast_object_type.value != "data source" and d.name != DUMMY_ENTITY_NAME
        ],
        infrastructure=[
            Change(d.infra_object_type, d.name, _transition(d.transition_type))
            for d in infra_diff.infra_object_diffs
        ],
        feast_output=captured.getvalue(),
    )


def _transition(transition: object) -> str:
    name = getattr(transition, "name", str(transition)).lower()
    return {"create": "created", "update": "updated", "delete": "deleted"}.get(name, name)
