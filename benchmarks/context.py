"""What the customer context adds to a Rank, timed in-process (no transport, no load generator).

``python -m benchmarks.context [--profiles 1000000]`` stores that many profiles of 20 features (with the
import path), gives the measured subjects 10 behavioural events and a contact history, then times, call
by call and interleaved, on one decision point with 24 actions and 15 live context features:

- ``baseline``: Rank with the candidates in the request and no subject_id (the path without the cache);
- ``inline``: the baseline with the subject's stored profile sent in the request instead (the same
  features reach the model: the difference to ``profile`` is what the cache itself costs);
- ``profile``: the same with a subject_id (stored profile, behaviour, contact history, exposure recorded);
- ``lookup``: the read side alone: the subject's context from LMDB, joined, and the contact rules;
- ``catalog``: Rank with only subject_id and live context, no candidates: the catalog under a contact
  policy (two frequency caps, suppression after ignored offers, a consent check).

It prints medians and p90 in microseconds, and the extra time of each against the baseline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from policies.contact import DAY_MS, NO_TERMS, ContactPolicy, FrequencyCap, Subject, eligible
from policies.features import Candidate, FeatureGroup, FeatureScalar
from policies.profile import as_features, fresh, join
from service.domain import CatalogEntry, DecisionPointConfig
from service.plane import DecisionPlane, RankInput
from service.profile_import import Row, write_batch
from service.store.lmdb_store import Store

ACTIONS = 24


def build(path: Path, profiles: int) -> DecisionPlane:
    plane = DecisionPlane(Store(path / "lmdb", map_size=4 << 30), path / "models")
    plane.load_all()
    policy = ContactPolicy(
        caps=(FrequencyCap("action", 1000, DAY_MS), FrequencyCap("channel", 1000, 7 * DAY_MS, "web")),
        suppress_after_ignored=1000,
        consent_namespace="consent",
    )
    plane.create_decision_point(DecisionPointConfig(name="bench", contact=policy))
    entries = [
        CatalogEntry(f"offer-{k}", (FeatureGroup("offer", {"category": f"c{k % 6}", "price": 10.0 + k}),))
        for k in range(ACTIONS)
    ]
    plane.customers.put_actions("bench", entries, replace=True)
    now = plane.clock()
    batch: list[Row] = []
    for i in range(profiles):
        user: dict[str, FeatureScalar | None] = {f"f{k}": float((i * (k + 1)) % 97) for k in range(12)}
        crm: dict[str, FeatureScalar | None] = {f"g{k}": f"v{(i + k) % 7}" for k in range(7)}
        batch.append((f"c{i}", [("user", user), ("crm", crm), ("consent", {"web": True})], now))
        if len(batch) == 10_000:
            write_batch(plane.store, batch)
            batch = []
    if batch:
        write_batch(plane.store, batch)
    return plane


def context_features(rng: random.Random) -> tuple[FeatureGroup, ...]:
    return (
        FeatureGroup("session", {f"s{k}": float(rng.randint(0, 9)) for k in range(10)}),
        FeatureGroup("page", {f"p{k}": f"x{rng.randint(0, 5)}" for k in range(5)}),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1500, help="timed calls of each kind")
    parser.add_argument("--keep", type=Path, default=None, help="build the store here once and reuse it later")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if args.keep is not None and (args.keep / "lmdb").exists():
            plane = DecisionPlane(Store(args.keep / "lmdb"), args.keep / "models")
            plane.load_all()
            print(f"reusing the store in {args.keep}")
        else:
            plane = build(args.keep or Path(tmp), args.profiles)
            print(f"stored {args.profiles:,} profiles in {time.perf_counter() - started:.1f} s")
        candidates = [
            Candidate(e.id, e.features, e.cache_key) for e in plane.customers.list_actions("bench", 100, "")[0]
        ]
        subjects = [f"c{rng.randrange(args.profiles)}" for _ in range(args.calls)]
        for subject in set(subjects):
            for k in range(10):
                plane.customers.track(subject, "view", f"cat{k % 4}", plane.clock() - k * 60_000)
        for subject in subjects[:200]:  # warm up caches, and leave the subjects a contact history
            plane.rank(RankInput("bench", candidates, context_features(rng), subject_id=subject, channel="web"))
        terms = [(c.id, NO_TERMS) for c in candidates]
        stored = {s: fresh(plane.customers.get_profile(s), {}, plane.clock()) for s in set(subjects)}
        timings: dict[str, list[float]] = {"baseline": [], "inline": [], "profile": [], "catalog": [], "lookup": []}
        policy = plane.states["bench"].record.config.contact
        for subject in subjects:
            context = context_features(rng)
            t0 = time.perf_counter()  # the read side alone: the subject's context and the rules
            looked_up, _ = plane.customers.for_rank(subject, "bench", {}, plane.clock(), catalog=True)
            features = as_features(join(looked_up.groups, context))
            eligible(policy, Subject(features, looked_up.history, "bench", "web", plane.clock()), terms)
            timings["lookup"].append((time.perf_counter() - t0) * 1e6)
            for kind in ("baseline", "inline", "profile", "catalog"):
                request = RankInput(
                    "bench",
                    [] if kind == "catalog" else candidates,
                    (*stored[subject], *context) if kind == "inline" else context,
                    subject_id="" if kind in ("baseline", "inline") else subject,
                    channel="web",
                )
                t0 = time.perf_counter()
                plane.rank(request)
                timings[kind].append((time.perf_counter() - t0) * 1e6)
        history = len(plane.customers.contact_history(subjects[0]))
        plane.close()
        plane.store.close()
    base = statistics.median(timings["baseline"])
    print(f"{args.calls} calls each, {ACTIONS} actions, 15 context features; contact history up to {history} exposures")
    inline = statistics.median(timings["inline"])
    print(f"{'kind':<10}{'p50 us':>10}{'p90 us':>10}{'- baseline':>12}{'- inline':>10}")
    for kind, values in timings.items():
        values.sort()
        p50, p90 = statistics.median(values), values[int(len(values) * 0.9)]
        print(f"{kind:<10}{p50:>10.0f}{p90:>10.0f}{p50 - base:>12.0f}{p50 - inline:>10.0f}")


if __name__ == "__main__":
    main()
