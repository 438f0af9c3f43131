"""What a challenger costs the learner: learning throughput with and without one, in-process.

A challenger is scored (one predict) and trained (one learn) on every event the champion learns,
so the learner's work per event roughly doubles. This measures it on the load benchmark's requests
(24 actions, ~15 context features): Ranks are logged and rewarded first, then the backlog is
learned and only that is timed, in CPU seconds of this process (not wall time, so the other work
on a shared machine counts less). Rounds alternate between the two set-ups, each on a fresh data
directory; the medians and their ratio are reported. No server and no sockets: a throughput ratio,
not a latency.

    python -m benchmarks.challenger                 # 2,000 events, 5 rounds each
    python -m benchmarks.challenger --events 500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from benchmarks.workload import build_rank_requests
from policies.learner_options import LearnerOptions
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service.domain import DecisionPointConfig
from service.grpc import converters
from service.plane import DecisionPlane
from service.store.lmdb_store import Store


def learn_seconds(folder: Path, requests: list[dpb.RankRequest], events: int, challenger: bool, seed: int) -> float:
    """CPU seconds to learn ``events`` logged and rewarded events, with or without a challenger."""
    plane = DecisionPlane(Store(folder / "lmdb"), folder / "models")
    plane.load_all()
    # The challenger takes the champion's own options: the cost of a second model of the same size.
    config = DecisionPointConfig(name="demo", challenger=LearnerOptions() if challenger else None)
    plane.create_decision_point(config)
    rng = random.Random(seed)
    try:
        for i in range(events):
            ranked = plane.rank(converters.rank_input(requests[i % len(requests)]))
            plane.reward("demo", ranked.event_id, rng.choice([0.0, 0.0, 0.0, 1.0]))
        started = time.process_time()
        while plane.learn_pending(1000):
            pass
        spent = time.process_time() - started
        assert plane.stats("demo").learned == events
        summary = plane.stats("demo").challenger
        assert (summary is not None) == challenger and (summary is None or summary.report.events == events)
        return spent
    finally:
        plane.close()
        plane.store.close()


def run(events: int, rounds: int) -> dict[str, float | int]:
    requests = [dpb.RankRequest.FromString(raw) for raw in build_rank_requests(7, 1000, 24, 200)]
    timings: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds):
        for challenger in (False, True):  # alternated, so a busy spell of the machine hits both
            with tempfile.TemporaryDirectory(prefix="kairos-challenger-bench-") as tmp:
                timings[challenger].append(learn_seconds(Path(tmp), requests, events, challenger, round_))
    alone, shadowed = statistics.median(timings[False]), statistics.median(timings[True])
    return {
        "events": events,
        "rounds": rounds,
        "learn_us_per_event": alone / events * 1e6,
        "learn_us_per_event_with_challenger": shadowed / events * 1e6,
        "events_per_s": events / alone,
        "events_per_s_with_challenger": events / shadowed,
        "cost_ratio": shadowed / alone,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.challenger",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=2000, help="events learned per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per set-up (default 5)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.events < 10 or args.rounds < 1:
        parser.error("--events must be at least 10 and --rounds at least 1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = run(args.events, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"learning {args.events} events (24 actions each), median of {args.rounds} rounds, CPU time:")
    print(
        f"  champion alone       {result['learn_us_per_event']:8.1f} us/event  {result['events_per_s']:8.0f} events/s"
    )
    print(
        f"  with a challenger    {result['learn_us_per_event_with_challenger']:8.1f} us/event  "
        f"{result['events_per_s_with_challenger']:8.0f} events/s"
    )
    print(f"  cost ratio           {result['cost_ratio']:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
