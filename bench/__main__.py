"""`python -m bench [--only NAME] [--quick]`: run the benchmarks, print tables, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import datetime, timezone

from bench.common import RESULTS, code_version, machine_info

BENCHMARKS = (
    "feature_retrieval",
    "materialize",
    "phases",
    "components",
    "pipeline",
    "dag_parse",
    "serving",
    "batch_predict",
    "tfx",
    "monitor",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only NAME")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)

    machine = machine_info()
    print(
        f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"python {machine['python']}, "
        + ", ".join(f"{name} {version}" for name, version in machine["packages"].items()),
        flush=True,
    )
    failed = 0
    for name in args.only or BENCHMARKS:
        print(f"\n== {name}{' (quick)' if args.quick else ''}", flush=True)
        started_at = datetime.now(timezone.utc)
        started = time.perf_counter()
        result = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        payload = {
            "benchmark": name,
            "quick": args.quick,
            "started_at": started_at.isoformat(timespec="seconds"),
            "total_s": round(time.perf_counter() - started, 1),
            "command": " ".join([sys.executable, "-m", "bench", *(argv or sys.argv[1:])]),
            "machine": machine,
            "code": code_version(),
            **result,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}{'.quick' if args.quick else ''}.json"
        path.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {path.relative_to(RESULTS.parent.parent)}", flush=True)
        failed += result["failed"]
    if failed:
        print(f"\n{failed} case(s) failed; see bench/results/logs/", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
