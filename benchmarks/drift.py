"""Real-time learning against a stale batch score, on a simulated customer base that drifts halfway.

The world. Customers belong to latent taste segments; their profile shows a
``tier`` that matches the segment only 75% of the time, an age that hints at
it, and nothing of each customer's own taste offset. Each visit brings live
context: the channel (the app lifts mobile offers, the call centre
insurance), the device, sometimes an open support ticket (technical or
billing: a matching service action is then far more valuable than any sale,
which almost nobody takes while angry) and sometimes a contract about to end
(a retention offer then works). Offers come in four categories at three price
levels, plus three service actions. Halfway, the drift: every segment's
tastes are partly redrawn, and three offers in a new category enter the
catalog.

The policies, on the same visits and the same click draws (common random
numbers):

- ``kairos``: a real ``kairos serve`` over gRPC with a new decision point at
  the service's defaults: Rank, show ``ranking[0]``, Reward 1 or 0;
- ``kairos_tuned``: the same, with interactions of every context namespace
  with every action namespace (the action id included) instead of all pairs,
  and learning_rate 1.0: the best setting measured here;
- ``batch``: a logistic regression per offer (the profile and context as
  one-hot features) fit once on uniformly logged pre-drift data, then frozen:
  the nightly propensity score that goes stale; an offer it has never seen
  gets the average logged click rate;
- ``uniform``: a random action;
- ``ceiling``: the same model class as Kairos (VW, same features and
  interactions) trained online with every action's true click probability
  revealed each round, then showing its best guess: full information, no
  exploration, but only the features a real system sees;
- ``oracle``: the action with the highest true click probability (it knows
  the latent tastes no feature shows).

It also compares learner settings (explorers, interactions, learning-rate
decay) in-process through the service's own policy code, on the same world.

    python -m benchmarks.drift                 # 3 worlds x 20,000 visits, drift at 10,000
    python -m benchmarks.drift --quick         # 1 world x 6,000 visits, 2 learner settings (CI)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks import plotting
from benchmarks.kairos_client import action, kairos_session
from benchmarks.load import machine, source
from policies.features import Candidate, FeatureGroup, FeatureScalar, NamespaceTable, action_line, shared_line
from policies.learner_options import Explorer, LearnerOptions
from policies.ranking import rank
from policies.vw import VWPolicy

CATEGORIES = ("mobile", "broadband", "tv", "insurance")
NEW_CATEGORY = "streaming"
PRICE_LEVELS = 3
CHANNELS = ("web", "app", "call_center")
DEVICES = ("ios", "android", "desktop")
SEGMENTS = 6
CUSTOMERS = 4000
TIER_ACCURACY = 0.75
TICKET_RATE = 0.15
CONTRACT_ENDING_RATE = 0.1
LOGGED_VISITS = 5000  # uniformly logged pre-drift visits the batch model is fit on
BUCKETS = 40  # points of the click-rate-over-time curves


def log(message: str) -> None:
    print(f"[drift {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the world -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    id: str
    category: str  # a sales category, or "service"
    level: int  # price level of a sale; 0 for a service action
    topic: str = ""  # what a service action helps with: technical, billing, retention

    def candidate(self) -> Candidate:
        if self.category == "service":
            return Candidate(self.id, (FeatureGroup("kind", {"service": True, "topic": self.topic}),))
        return Candidate(
            self.id,
            (
                FeatureGroup("offer", {"category": self.category, "price_level": float(self.level)}),
                FeatureGroup("kind", {"sale": True}),
            ),
        )


SERVICE_ACTIONS = (
    Offer("fix-my-problem", "service", 0, "technical"),
    Offer("billing-help", "service", 0, "billing"),
    Offer("renew-with-discount", "service", 0, "retention"),
)


@dataclass(frozen=True)
class Customer:
    segment: int
    tier: int  # what the profile shows: the segment, or with probability 1 - TIER_ACCURACY another one
    age: int
    own_taste: tuple[float, ...]  # per category (new one last); no feature shows it


@dataclass(frozen=True)
class Visit:
    customer: Customer
    channel: str
    device: str
    ticket: str  # "", "technical" or "billing"
    contract_ending: bool
    click_draw: float  # a click happens when this is below the shown action's click probability
    uniform_draw: float  # the uniform policy's pick

    def context(self) -> list[FeatureGroup]:
        user: dict[str, FeatureScalar] = {"tier": f"t{self.customer.tier}", "age": self.customer.age / 100}
        situation: dict[str, FeatureScalar] = {"channel": self.channel, "device": self.device}
        if self.ticket:
            situation |= {"open_ticket": True, "ticket_topic": self.ticket}
        if self.contract_ending:
            situation["contract_ending"] = True
        return [FeatureGroup("user", user), FeatureGroup("situation", situation)]


class World:
    """Segments' tastes before and after the drift, the catalog, and a fixed customer base."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        categories = (*CATEGORIES, NEW_CATEGORY)
        self.tastes_before = [[rng.gauss(0, 1.2) for _ in categories] for _ in range(SEGMENTS)]
        # Tastes change: each segment keeps 30% of its old taste; the new category is popular.
        self.tastes_after = [
            [0.3 * old + rng.gauss(0, 1.2) for old in row[:-1]] + [rng.gauss(0.8, 1.0)] for row in self.tastes_before
        ]
        sales = [Offer(f"{c}-{k}", c, k) for c in CATEGORIES for k in range(PRICE_LEVELS)]
        self.catalog_before = [*sales, *SERVICE_ACTIONS]
        self.catalog_after = [
            *self.catalog_before,
            *(Offer(f"{NEW_CATEGORY}-{k}", NEW_CATEGORY, k) for k in range(PRICE_LEVELS)),
        ]
        self.customers = []
        for _ in range(CUSTOMERS):
            segment = rng.randrange(SEGMENTS)
            tier = segment if rng.random() < TIER_ACCURACY else rng.randrange(SEGMENTS)
            age = max(18, min(90, round(rng.gauss(25 + 8 * segment, 8))))
            own = tuple(rng.gauss(0, 0.5) for _ in categories)
            self.customers.append(Customer(segment, tier, age, own))

    def visits(self, rng: random.Random, count: int) -> list[Visit]:
        visits = []
        for _ in range(count):
            ticket = ""
            if rng.random() < TICKET_RATE:
                ticket = "technical" if rng.random() < 0.6 else "billing"
            visits.append(
                Visit(
                    customer=rng.choice(self.customers),
                    channel=rng.choice(CHANNELS),
                    device=rng.choice(DEVICES),
                    ticket=ticket,
                    contract_ending=rng.random() < CONTRACT_ENDING_RATE,
                    click_draw=rng.random(),
                    uniform_draw=rng.random(),
                )
            )
        return visits

    def click_probabilities(self, visit: Visit, catalog: Sequence[Offer], drifted: bool) -> list[float]:
        tastes = (self.tastes_after if drifted else self.tastes_before)[visit.customer.segment]
        probabilities = []
        for offer in catalog:
            if offer.category == "service":
                probabilities.append(_service_probability(offer.topic, visit))
                continue
            if visit.ticket:
                probabilities.append(0.02)  # nobody buys while their problem is open
                continue
            index = (*CATEGORIES, NEW_CATEGORY).index(offer.category)
            logit = tastes[index] + visit.customer.own_taste[index] - 0.35 * offer.level - 1.6
            logit += 0.6 if visit.channel == "app" and offer.category == "mobile" else 0.0
            logit += 0.5 if visit.channel == "call_center" and offer.category == "insurance" else 0.0
            logit -= 0.4 if visit.device == "desktop" and offer.category == NEW_CATEGORY else 0.0
            probabilities.append(1 / (1 + math.exp(-logit)))
        return probabilities


def _service_probability(topic: str, visit: Visit) -> float:
    if topic == "technical":
        return 0.6 if visit.ticket == "technical" else 0.25 if visit.ticket == "billing" else 0.01
    if topic == "billing":
        return 0.7 if visit.ticket == "billing" else 0.01
    # retention
    if visit.contract_ending:
        return 0.05 if visit.ticket else 0.5
    return 0.02


@dataclass(frozen=True)
class Scenario:
    """One run's world, its visits (drift at ``drift_at``) and every visit's true click probabilities."""

    world: World
    visits: list[Visit]
    drift_at: int
    probabilities: list[list[float]]  # per visit, over the catalog of that visit

    @classmethod
    def make(cls, seed: int, rounds: int) -> Scenario:
        world = World(seed)
        visits = world.visits(random.Random(seed * 7919 + 1), rounds)
        drift_at = rounds // 2
        probabilities = [
            world.click_probabilities(v, world.catalog_after if t >= drift_at else world.catalog_before, t >= drift_at)
            for t, v in enumerate(visits)
        ]
        return cls(world, visits, drift_at, probabilities)

    def catalog(self, t: int) -> list[Offer]:
        return self.world.catalog_after if t >= self.drift_at else self.world.catalog_before


# -- the stale batch model -------------------------------------------------------------------------------------


def one_hot(visit: Visit) -> npt.NDArray[np.float64]:
    """The batch model's features: a bias, tier, age, channel, device, ticket topic, contract ending."""
    x = np.zeros(1 + SEGMENTS + 1 + len(CHANNELS) + len(DEVICES) + 3)
    x[0] = 1.0
    x[1 + visit.customer.tier] = 1.0
    at = 1 + SEGMENTS
    x[at] = visit.customer.age / 100
    x[at + 1 + CHANNELS.index(visit.channel)] = 1.0
    at += 1 + len(CHANNELS)
    x[at + DEVICES.index(visit.device)] = 1.0
    at += len(DEVICES)
    if visit.ticket:
        x[at + (0 if visit.ticket == "technical" else 1)] = 1.0
    if visit.contract_ending:
        x[at + 2] = 1.0
    return x


def fit_logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float = 1.0, iterations: int = 50
) -> npt.NDArray[np.float64]:
    """L2-regularised logistic regression by Newton's method (the bias, column 0, is not penalised)."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 1e-6
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return w


class BatchModel:
    """Per-offer logistic regressions fit once on uniformly logged data, then frozen."""

    def __init__(self, weights: dict[str, npt.NDArray[np.float64]], unseen_score: float) -> None:
        self.weights = weights
        self.unseen_score = unseen_score

    @classmethod
    def fit(cls, logged: Sequence[tuple[Visit, str, float]]) -> BatchModel:
        by_offer: dict[str, list[tuple[Visit, float]]] = {}
        for visit, offer_id, click in logged:
            by_offer.setdefault(offer_id, []).append((visit, click))
        weights = {
            offer_id: fit_logistic(np.array([one_hot(v) for v, _ in rows]), np.array([c for _, c in rows]))
            for offer_id, rows in by_offer.items()
        }
        return cls(weights, float(np.mean([click for _, _, click in logged])))

    def score(self, visit: Visit, offer_id: str) -> float:
        w = self.weights.get(offer_id)
        if w is None:
            return self.unseen_score
        return float(1 / (1 + math.exp(-float(one_hot(visit) @ w))))

    def choose(self, visit: Visit, catalog: Sequence[Offer]) -> int:
        scores = [self.score(visit, offer.id) for offer in catalog]
        return int(np.argmax(scores))


def logged_data(world: World, seed: int, count: int) -> list[tuple[Visit, str, float]]:
    """Yesterday's log: pre-drift visits shown a uniformly random action."""
    rng = random.Random(seed * 104729 + 3)
    logged = []
    for visit in world.visits(rng, count):
        catalog = world.catalog_before
        index = rng.randrange(len(catalog))
        p = world.click_probabilities(visit, catalog, drifted=False)[index]
        logged.append((visit, catalog[index].id, 1.0 if rng.random() < p else 0.0))
    return logged


# -- the policies --------------------------------------------------------------------------------------------


Chooser = Callable[[int, Visit, list[Offer]], int]


def run_policy(
    scenario: Scenario, choose: Chooser, learn: Callable[[int, int, float], None] | None = None
) -> list[int]:
    """Play every visit: ``choose`` picks an index into the catalog, ``learn(t, index, click)`` hears back."""
    shown = []
    for t, visit in enumerate(scenario.visits):
        index = choose(t, visit, scenario.catalog(t))
        shown.append(index)
        if learn is not None:
            learn(t, index, 1.0 if visit.click_draw < scenario.probabilities[t][index] else 0.0)
    return shown


def oracle_policy(scenario: Scenario) -> list[int]:
    return [int(np.argmax(p)) for p in scenario.probabilities]


def uniform_policy(scenario: Scenario) -> list[int]:
    return [int(v.uniform_draw * len(scenario.catalog(t))) for t, v in enumerate(scenario.visits)]


def batch_policy(scenario: Scenario, model: BatchModel) -> list[int]:
    return run_policy(scenario, lambda _t, visit, catalog: model.choose(visit, catalog))


def in_process_policy(scenario: Scenario, options: LearnerOptions, seed: int) -> list[int]:
    """Kairos's own policy code (encoding, VW, sampling) without the transport: for comparing settings."""
    table = NamespaceTable()
    policy = VWPolicy(options.vw_args(table))
    rng = random.Random(seed)
    lines_by_id: dict[str, str] = {}
    state: dict[str, Any] = {}

    def lines(catalog: Sequence[Offer]) -> list[str]:
        return [lines_by_id.setdefault(o.id, action_line(o.candidate(), table)) for o in catalog]

    def choose(_t: int, visit: Visit, catalog: list[Offer]) -> int:
        nonlocal policy
        shared = shared_line(visit.context(), table)
        actions = lines(catalog)
        policy = policy.under(options.vw_args(table))  # as the service does when a namespace first appears
        prediction = policy.predict(shared, actions)
        ranking = rank(prediction.pmf, prediction.scores, rng.random())
        state.update(shared=shared, actions=actions, probabilities=ranking.probabilities)
        return ranking.order[0]

    def learn(_t: int, index: int, click: float) -> None:
        policy.learn(state["shared"], state["actions"], index, -click, state["probabilities"][index])

    try:
        return run_policy(scenario, choose, learn)
    finally:
        policy.close()


def ceiling_policy(scenario: Scenario, options: LearnerOptions) -> list[int]:
    """The same VW model class, trained each round on every action's true click probability; shows its best."""
    table = NamespaceTable()
    greedy = replace(options, explorer=Explorer("epsilon_greedy", epsilon=0.0))
    policy = VWPolicy(greedy.vw_args(table))
    lines_by_id: dict[str, str] = {}
    shown = []
    try:
        for t, visit in enumerate(scenario.visits):
            catalog = scenario.catalog(t)
            shared = shared_line(visit.context(), table)
            actions = [lines_by_id.setdefault(o.id, action_line(o.candidate(), table)) for o in catalog]
            policy = policy.under(greedy.vw_args(table))
            prediction = policy.predict(shared, actions)
            shown.append(min(range(len(actions)), key=lambda i: (prediction.scores[i], i)))
            for index, p in enumerate(scenario.probabilities[t]):
                policy.learn(shared, actions, index, cost=-p, probability=1.0)
    finally:
        policy.close()
    return shown


def kairos_policy(scenario: Scenario, seed: int, options: LearnerOptions | None = None) -> list[int]:
    """A real ``kairos serve`` over gRPC: Rank every visit, show ranking[0], Reward the click (0 or 1)."""
    protos = {o.id: action(o.candidate()) for o in scenario.world.catalog_after}
    with kairos_session("drift", seed, options) as session:

        def choose(t: int, visit: Visit, catalog: list[Offer]) -> int:
            return session.choose(f"visit-{t}", visit.context(), [protos[o.id] for o in catalog])

        def learn(t: int, _index: int, click: float) -> None:
            session.reward(f"visit-{t}", click)

        shown = run_policy(scenario, choose, learn)
        stats = session.stats()
        log(f"kairos: {stats.ranks} ranks, {stats.rewards} rewards, {stats.learned} learned")
    return shown


# -- measuring -------------------------------------------------------------------------------------------------


def clicks(scenario: Scenario, shown: Sequence[int]) -> npt.NDArray[np.float64]:
    return np.array(
        [
            1.0 if v.click_draw < scenario.probabilities[t][i] else 0.0
            for t, (v, i) in enumerate(zip(scenario.visits, shown, strict=True))
        ]
    )


def expected(scenario: Scenario, shown: Sequence[int]) -> npt.NDArray[np.float64]:
    return np.array([scenario.probabilities[t][i] for t, i in enumerate(shown)])


@dataclass(frozen=True)
class Windows:
    """Round ranges reported: before and after the drift, and the second half of each (once learned)."""

    rounds: int
    drift_at: int

    def ranges(self) -> dict[str, tuple[int, int]]:
        before, after = self.drift_at, self.rounds - self.drift_at
        return {
            "before_drift": (0, self.drift_at),
            "before_drift_second_half": (before // 2, self.drift_at),
            "after_drift": (self.drift_at, self.rounds),
            "after_drift_second_half": (self.drift_at + after // 2, self.rounds),
        }


def summarise(
    windows: Windows,
    click_runs: dict[str, list[npt.NDArray[np.float64]]],
    expected_runs: dict[str, list[npt.NDArray[np.float64]]],
) -> dict[str, Any]:
    """Per policy and window: click rate (realised clicks, averaged over seeds), shares of oracle and ceiling."""
    out: dict[str, Any] = {}
    for name, runs in click_runs.items():
        per_window = {}
        for window, (lo, hi) in windows.ranges().items():
            rate = float(np.mean([r[lo:hi].mean() for r in runs]))
            per_window[window] = {"click_rate": rate}
        out[name] = per_window
    for name in out:
        for window in out[name]:
            rate = out[name][window]["click_rate"]
            for reference in ("oracle", "ceiling", "batch"):
                if reference in out:
                    base = out[reference][window]["click_rate"]
                    out[name][window][f"vs_{reference}"] = rate / base if base else None
    # Regret against the oracle, in expected clicks, cumulative at each bucket end.
    edges = np.linspace(0, windows.rounds, BUCKETS + 1).astype(int)
    for name, runs in expected_runs.items():
        oracle_runs = expected_runs["oracle"]
        gaps = np.mean([o - r for o, r in zip(oracle_runs, runs, strict=True)], axis=0)
        out[name]["regret"] = [float(gaps[:e].sum()) for e in edges[1:]]
        out[name]["curve"] = [
            float(np.mean([r[a:b].mean() for r in click_runs[name]])) for a, b in itertools.pairwise(edges)
        ]
    return {"policies": out, "bucket_ends": [int(e) for e in edges[1:]]}


# -- learner settings -------------------------------------------------------------------------------------------


# Every context namespace with every action namespace, the action id included; no context x context pairs,
# which are the same for every action of a Rank and only dilute the updates.
CONTEXT_X_ACTION = ("user*_action", "situation*_action", "user*offer", "situation*offer", "user*kind", "situation*kind")
TUNED = LearnerOptions(Explorer("square_cb", gamma_scale=10), CONTEXT_X_ACTION, learning_rate=1.0)


def settings(quick: bool) -> list[tuple[str, LearnerOptions]]:
    every = ("*",)
    squarecb = Explorer("square_cb", gamma_scale=10)
    default = ("default: squarecb g=10, context x actions, lr 1.0, power_t 0.5", LearnerOptions())
    tuned = ("squarecb g=10, context x action, lr 1.0", TUNED)
    if quick:
        return [default, tuned]
    cxa = CONTEXT_X_ACTION
    return [
        default,
        ("squarecb g=10, all pairs, power_t 0.25", LearnerOptions(squarecb, every, power_t=0.25)),
        ("squarecb g=10, all pairs, power_t 0", LearnerOptions(squarecb, every, power_t=0.0)),
        ("squarecb g=10, all pairs, lr 1.0", LearnerOptions(squarecb, every, learning_rate=1.0)),
        ("squarecb g=10, all pairs, lr 2.0", LearnerOptions(squarecb, every, learning_rate=2.0)),
        ("squarecb g=50, all pairs", LearnerOptions(Explorer("square_cb", gamma_scale=50), every)),
        ("squarecb g=10, context x action", LearnerOptions(squarecb, cxa)),
        tuned,
        ("squarecb g=10, context x action, lr 1.0, power_t 0.25", replace(TUNED, power_t=0.25)),
        ("squarecb g=10, context x action, power_t 0", LearnerOptions(squarecb, cxa, power_t=0.0)),
        ("squarecb g=20, context x action, lr 1.0", replace(TUNED, explorer=Explorer("square_cb", gamma_scale=20))),
        ("squarecb g=10, no interactions", LearnerOptions(squarecb, ())),
        ("epsilon 0.05, all pairs", LearnerOptions(Explorer("epsilon_greedy", epsilon=0.05), every)),
        ("bag 5, all pairs", LearnerOptions(Explorer("bag", bag_size=5, epsilon=0.05), every)),
        ("softmax l=5, all pairs", LearnerOptions(Explorer("softmax", softmax_lambda=5), every)),
        ("regcb, all pairs", LearnerOptions(Explorer("reg_cb"), every)),
    ]


# -- the command -------------------------------------------------------------------------------------------------


POLICY_LABELS = {
    "kairos": "Kairos (gRPC, defaults)",
    "kairos_tuned": "Kairos (gRPC, context x action, lr 1.0)",
    "batch": "stale batch (logistic regression)",
    "uniform": "uniform random",
    "ceiling": "full-information ceiling",
    "oracle": "oracle",
}


def run(rounds: int, seeds: int, setting_seeds: int, quick: bool, with_settings: bool = True) -> dict[str, Any]:
    windows = Windows(rounds, rounds // 2)
    click_runs: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name in POLICY_LABELS}
    expected_runs: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name in POLICY_LABELS}
    for seed in range(seeds):
        scenario = Scenario.make(seed, rounds)
        started = time.perf_counter()
        model = BatchModel.fit(logged_data(scenario.world, seed, LOGGED_VISITS))
        shown_by_policy = {
            "oracle": oracle_policy(scenario),
            "uniform": uniform_policy(scenario),
            "batch": batch_policy(scenario, model),
        }
        log(f"seed {seed}: oracle, uniform, batch [{time.perf_counter() - started:.0f} s]")
        started = time.perf_counter()
        shown_by_policy["ceiling"] = ceiling_policy(scenario, LearnerOptions())
        log(f"seed {seed}: ceiling [{time.perf_counter() - started:.0f} s]")
        started = time.perf_counter()
        shown_by_policy["kairos"] = kairos_policy(scenario, seed)
        log(f"seed {seed}: kairos over gRPC [{time.perf_counter() - started:.0f} s]")
        started = time.perf_counter()
        shown_by_policy["kairos_tuned"] = kairos_policy(scenario, seed, TUNED)
        log(f"seed {seed}: kairos over gRPC, context x action [{time.perf_counter() - started:.0f} s]")
        for name, shown in shown_by_policy.items():
            click_runs[name].append(clicks(scenario, shown))
            expected_runs[name].append(expected(scenario, shown))
    result = summarise(windows, click_runs, expected_runs)
    result |= {"rounds": rounds, "drift_at": windows.drift_at, "seeds": seeds, "logged_visits": LOGGED_VISITS}
    result["labels"] = POLICY_LABELS
    if with_settings:
        result["settings"] = compare_settings(rounds, setting_seeds, quick)
    return result


def compare_settings(rounds: int, seeds: int, quick: bool) -> list[dict[str, Any]]:
    windows = Windows(rounds, rounds // 2)
    scenarios = [Scenario.make(seed, rounds) for seed in range(seeds)]
    oracle = [clicks(s, oracle_policy(s)) for s in scenarios]
    rows = []
    for label, options in settings(quick):
        started = time.perf_counter()
        runs = [clicks(s, in_process_policy(s, options, seed + 1)) for seed, s in enumerate(scenarios)]
        row: dict[str, Any] = {"setting": label}
        for window, (lo, hi) in windows.ranges().items():
            rate = float(np.mean([r[lo:hi].mean() for r in runs]))
            best = float(np.mean([o[lo:hi].mean() for o in oracle]))
            row[window] = {"click_rate": rate, "vs_oracle": rate / best}
        rows.append(row)
        log(
            f"{label:48s} before {row['before_drift']['click_rate']:.3f} after {row['after_drift']['click_rate']:.3f}"
            f" [{time.perf_counter() - started:.0f} s]"
        )
    return rows


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['seeds']} seed(s) x {result['rounds']} visits, drift at {result['drift_at']}; "
        f"batch fit on {result['logged_visits']} uniformly logged pre-drift visits",
        "",
        "| policy | before drift | before, 2nd half | after drift | after, 2nd half | after: vs batch | "
        "after: share of ceiling | after: share of oracle | regret (expected clicks) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in POLICY_LABELS.items():
        p = result["policies"][name]
        after = p["after_drift"]
        lines.append(
            f"| {label} | {p['before_drift']['click_rate']:.3f} | {p['before_drift_second_half']['click_rate']:.3f} "
            f"| {after['click_rate']:.3f} | {p['after_drift_second_half']['click_rate']:.3f} "
            f"| {after['vs_batch']:.2f}x | {after['vs_ceiling']:.0%} | {after['vs_oracle']:.0%} "
            f"| {p['regret'][-1]:.0f} |"
        )
    if result.get("settings"):
        lines += [
            "",
            "| learner setting (in-process) | before drift | after drift | after, 2nd half | after: share of oracle |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in sorted(result["settings"], key=lambda r: -r["after_drift"]["click_rate"]):
            lines.append(
                f"| {row['setting']} | {row['before_drift']['click_rate']:.3f} "
                f"| {row['after_drift']['click_rate']:.3f} "
                f"| {row['after_drift_second_half']['click_rate']:.3f} | {row['after_drift']['vs_oracle']:.0%} |"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    ends = result["bucket_ends"]
    series = {result["labels"][name]: result["policies"][name]["curve"] for name in POLICY_LABELS}
    regret = {result["labels"][name]: result["policies"][name]["regret"] for name in POLICY_LABELS}  # oracle: 0
    return plotting.curves(
        path,
        ends,
        [
            plotting.Panel(
                "click rate per window of visits", "click rate", series, marker_x=result["drift_at"], marker="drift"
            ),
            plotting.Panel(
                "regret against the oracle",
                "cumulative expected clicks lost",
                regret,
                marker_x=result["drift_at"],
                marker="drift",
            ),
        ],
        title="Real-time learning vs a stale batch score (drift halfway)",
        xlabel="visits",
    )


def check(result: dict[str, Any], min_vs_batch: float, min_ceiling_share: float) -> list[str]:
    """Failures of the CI thresholds (generous margins below the measured values)."""
    after = result["policies"]["kairos"]["after_drift"]
    failures = []
    if after["vs_batch"] < min_vs_batch:
        failures.append(
            f"Kairos after the drift is {after['vs_batch']:.2f}x the stale batch, below {min_vs_batch:.2f}x"
        )
    if after["vs_ceiling"] < min_ceiling_share:
        failures.append(
            f"Kairos after the drift reaches {after['vs_ceiling']:.0%} of the ceiling, below {min_ceiling_share:.0%}"
        )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.drift", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="visits per seed, the drift at half (default 20,000; quick 6,000)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="worlds to run every policy on (default 3)")
    parser.add_argument("--setting-seeds", type=int, default=3, help="worlds for the learner settings (default 3)")
    parser.add_argument("--quick", action="store_true", help="6,000 visits, 1 world, 2 learner settings")
    parser.add_argument("--no-settings", action="store_true", help="skip the comparison of learner settings")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="writes drift.json and drift.png here")
    parser.add_argument(
        "--min-vs-batch",
        type=float,
        default=0.0,
        help="exit 1 if Kairos after the drift is below this multiple of batch",
    )
    parser.add_argument(
        "--min-ceiling-share",
        type=float,
        default=0.0,
        help="exit 1 if Kairos after the drift is below this share of the ceiling",
    )
    args = parser.parse_args(argv)
    seeds, setting_seeds = (1, 1) if args.quick else (args.seeds, args.setting_seeds)
    rounds = args.rounds or (6000 if args.quick else 20000)
    started, code, host = datetime.now(UTC), source(), machine()
    result = run(rounds, seeds, setting_seeds, args.quick, with_settings=not args.no_settings)
    result |= {"started_utc": started.isoformat(timespec="seconds"), "machine": host, "source": code}
    result["command"] = "python -m benchmarks.drift" + (" --quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "drift.md").write_text(text + "\n")
    print(text)
    if plot(result, args.out / "drift.png"):
        log(f"wrote {args.out / 'drift.png'}")
    failures = check(result, args.min_vs_batch, args.min_ceiling_share)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
