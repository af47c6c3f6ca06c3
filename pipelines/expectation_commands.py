"""`portside expectations propose`: derive a suite's data-driven expectations from reference
training sets, for a person to review and commit (components/validate/propose.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from portside.components.validate.propose import ProposalSettings


def _propose(args: argparse.Namespace) -> int:
    from portside.components.validate.propose import format_suite, is_proposed, propose

    settings = ProposalSettings(
        quantiles=tuple(args.quantiles),
        tolerance=args.tolerance,
        slack=args.slack,
        max_headroom=args.max_headroom,
    )
    proposal = propose(Path(args.suite), [Path(p) for p in args.training_set], settings)
    out = Path(args.out or args.suite)
    text = format_suite(proposal.suite)
    before = _proposed(out)
    changed = [e for e in proposal.suite["expectations"] if is_proposed(e) and e not in before]
    print(
        f"{out}: {proposal.kept} hand-written expectations kept, {proposal.proposed} proposed "
        f"for {len(proposal.columns)} numeric features, {len(changed)} new or changed"
    )
    if args.check:
        same = out.is_file() and out.read_text() == text
        print("up to date" if same else f"{out} differs from the proposal")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("review the change (git diff) before committing it")
    return 0


def _proposed(path: Path) -> list[dict]:
    """The proposed expectations a suite file holds now (none if it is absent or unreadable:
    the proposal then counts as all new)."""
    from portside.components.validate.propose import is_proposed

    try:
        return [e for e in json.loads(path.read_text())["expectations"] if is_proposed(e)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _quantiles(text: str) -> list[float]:
    try:
        return [float(q) for q in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"comma-separated numbers expected: {text!r}") from error


def add_expectation_commands(commands: argparse._SubParsersAction) -> None:
    defaults = ProposalSettings()
    group = commands.add_parser(
        "expectations", help="the validation suite: propose its data-derived expectations"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    prop = group.add_parser(
        "propose",
        help="propose bounds and distribution expectations from reference training sets",
        description=(
            "Keep the suite's hand-written expectations and replace its proposed ones with an "
            "upper bound, quantile bands and a mean band for every numeric feature, derived "
            "from the reference training sets (several widen the bands to cover them all)."
        ),
    )
    prop.add_argument(
        "--training-set",
        nargs="+",
        action="extend",
        required=True,
        metavar="DIR",
        help="reference training set directories (training_set.parquet), known to be good",
    )
    prop.add_argument("--suite", required=True, help="expectation suite (GX JSON) to start from")
    prop.add_argument("--out", default=None, help="where to write (default: over --suite)")
    prop.add_argument(
        "--quantiles",
        type=_quantiles,
        default=list(defaults.quantiles),
        help="comma-separated quantiles to band (default: %(default)s)",
    )
    prop.add_argument("--tolerance", type=float, default=defaults.tolerance, help="band factor")
    prop.add_argument(
        "--slack", type=float, default=defaults.slack, help="band slack: share of the 1-99%% range"
    )
    prop.add_argument(
        "--max-headroom",
        type=float,
        default=defaults.max_headroom,
        help="upper bound: this many reference ranges above the smallest value",
    )
    prop.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file would change"
    )
    prop.set_defaults(handler=_propose)
