"""``python -m tests.chaos --seed N --steps M [--nodes K]``: a chaos run by hand (root only).

Prints the journal as it goes and the summary at the end; exits 0 if every
run passed, 1 otherwise.  Several seeds: ``--seeds 3`` runs N, N+1, N+2.
The homes, node logs and journal stay in ``--keep`` (default: a fresh
folder under /tmp) for reading after a failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from p2ptchap.testing.netns import nft_available
from tests.chaos.driver import Chaos, run
from tests.chaos.model import MIB, Settings, replay_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the plan's seed (default 1)")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    parser.add_argument("--steps", type=int, default=200, help="random steps (default 200)")
    parser.add_argument("--nodes", type=int, default=6, help="nodes, 3..12 (default 6)")
    parser.add_argument("--pace", type=float, default=1.0, help="most seconds between steps")
    parser.add_argument("--big-file", type=int, default=8, help="largest file, MiB (default 8)")
    parser.add_argument("--rooms", type=int, default=3, help="private rooms (default 3)")
    parser.add_argument("--settle", type=float, default=600, help="seconds allowed to converge")
    parser.add_argument(
        "--outage", type=float, default=45, help="mean seconds of a long outage (0: none)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="folder for homes, logs, journal")
    parser.add_argument("--quiet", action="store_true", help="print only the summaries")
    parser.add_argument("--verbose", action="store_true", help="nodes log at debug level")
    parser.add_argument(
        "--force",
        default="",
        help="actions played at least once, comma-separated (the CI plan forces every fault)",
    )
    args = parser.parse_args(argv)
    reason = nft_available()
    if reason is not None:
        print(f"chaos: cannot run here: {reason}", file=sys.stderr)
        return 2
    if not 3 <= args.nodes <= 12:
        parser.error("--nodes must be within 3..12")
    forced = tuple(a for a in args.force.split(",") if a)
    unknown = sorted(set(forced) - {*Chaos.ACTIONS, "outage"})
    if unknown:
        parser.error(f"no such action: {', '.join(unknown)} (see Chaos.ACTIONS)")
    base = args.keep or Path(tempfile.mkdtemp(prefix="chaos-"))
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        settings = Settings(
            seed=seed,
            steps=args.steps,
            nodes=args.nodes,
            pace=args.pace,
            big_file=args.big_file * MIB,
            settle=args.settle,
            private_rooms=args.rooms,
            outage=args.outage,
            forced=forced,
            verbose=args.verbose,
            echo=None if args.quiet else sys.stdout,
        )
        summary = run(settings, base / f"seed-{seed}")
        if args.quiet:  # otherwise the journal has printed it already
            print(summary.render(), flush=True)
        if not summary.passed:
            failed += 1
            print(f"replay: {replay_command(settings)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
