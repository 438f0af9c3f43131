"""The load benchmarks' workload: an offer catalog, customer context and Rank requests built from a seed.

Three scenarios (``python -m benchmarks.load --scenario``):

- ``inline``: 24 candidates in the request and ~15 context features sent with it (no stored profile);
- ``profile``: 24 candidates, a subject_id whose stored profile (19 features: user, history, crm,
  consent) joins 5 live session features; every shown offer is recorded in the contact history;
- ``catalog``: only a subject_id, the channel and the live session features: the decision point's
  catalog is ranked under a contact policy (a cap per offer, a cap per channel, suppression of offers
  the subject keeps ignoring, a consent check), the way a website asks "what next for this visitor".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb

DECISION_POINT = "demo"
SCENARIOS = ("inline", "profile", "catalog")
CHANNEL = "web"
DAY_S = 86_400

CATEGORIES = ("travel", "electronics", "fashion", "grocery", "books", "sports", "home", "beauty")
SEGMENTS = ("gold", "silver", "bronze", "new", "lapsed")
COUNTRIES = ("NL", "DE", "FR", "GB", "US", "ES", "IT", "SE")
DEVICES = ("ios", "android", "desktop", "tablet")
REFERRERS = ("search", "email", "social", "direct", "partner")
FORMATS = ("banner", "card", "video", "push")


def _s(value: str) -> tpb.FeatureValue:
    return tpb.FeatureValue(string_value=value)


def _n(value: float) -> tpb.FeatureValue:
    return tpb.FeatureValue(number_value=value)


def _b(value: bool) -> tpb.FeatureValue:
    return tpb.FeatureValue(bool_value=value)


def build_catalog(rng: random.Random, size: int) -> list[tpb.Action]:
    """Offers with 5 features each: half in one namespace, half split over two."""
    catalog = []
    for i in range(size):
        offer = {
            "category": _s(rng.choice(CATEGORIES)),
            "price": _n(round(rng.uniform(5, 500), 2)),
            "margin": _n(round(rng.uniform(0.05, 0.6), 3)),
        }
        creative = {"format": _s(rng.choice(FORMATS)), "discounted": _b(rng.random() < 0.3)}
        if i % 2:
            groups = [
                tpb.FeatureGroup(namespace="offer", features=offer),
                tpb.FeatureGroup(namespace="creative", features=creative),
            ]
        else:
            groups = [tpb.FeatureGroup(namespace="offer", features=offer | creative)]
        catalog.append(tpb.Action(id=f"offer-{i:04d}", features=groups))
    return catalog


def user_features(rng: random.Random) -> dict[str, tpb.FeatureValue]:
    return {
        "segment": _s(rng.choice(SEGMENTS)),
        "age": _n(rng.randint(18, 80)),
        "tenure_days": _n(rng.randint(0, 3000)),
        "country": _s(rng.choice(COUNTRIES)),
        "member": _b(rng.random() < 0.4),
        "plan": _s(rng.choice(("free", "plus", "pro"))),
    }


def session_features(rng: random.Random) -> dict[str, tpb.FeatureValue]:
    return {
        "device": _s(rng.choice(DEVICES)),
        "hour": _n(rng.randint(0, 23)),
        "weekday": _s(rng.choice(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))),
        "referrer": _s(rng.choice(REFERRERS)),
        "pages_viewed": _n(rng.randint(1, 40)),
    }


def history_features(rng: random.Random) -> dict[str, tpb.FeatureValue]:
    return {
        "clicks_7d": _n(rng.randint(0, 50)),
        "purchases_30d": _n(rng.randint(0, 10)),
        "last_category": _s(rng.choice(CATEGORIES)),
        "avg_basket": _n(round(rng.uniform(10, 300), 2)),
    }


def build_context(rng: random.Random) -> list[tpb.FeatureGroup]:
    """15 context features, in three namespaces for 3 requests in 4 and in two for the rest."""
    user, session, history = user_features(rng), session_features(rng), history_features(rng)
    if rng.random() < 0.75:
        return [
            tpb.FeatureGroup(namespace="user", features=user),
            tpb.FeatureGroup(namespace="session", features=session),
            tpb.FeatureGroup(namespace="history", features=history),
        ]
    user.update(last_category=history["last_category"], avg_basket=history["avg_basket"])
    session.update(clicks_7d=history["clicks_7d"], purchases_30d=history["purchases_30d"])
    return [tpb.FeatureGroup(namespace="user", features=user), tpb.FeatureGroup(namespace="session", features=session)]


def build_rank_requests(seed: int, pool: int, actions: int, catalog_size: int) -> list[bytes]:
    """Serialized RankRequests (serialized once, so building them costs the client nothing per call)."""
    rng = random.Random(seed)
    catalog = build_catalog(rng, catalog_size)
    requests = []
    for _ in range(pool):
        request = dpb.RankRequest(
            decision_point=DECISION_POINT, context=build_context(rng), actions=rng.sample(catalog, actions)
        )
        requests.append(request.SerializeToString())
    return requests


def build_profile(rng: random.Random) -> list[tpb.FeatureGroup]:
    """A stored profile of 19 features: what a CRM or CDP pushes (the live session is not in it)."""
    crm = {
        "lifetime_value": _n(round(rng.uniform(0, 5000), 2)),
        "churn_risk": _n(round(rng.random(), 3)),
        "contract_months_left": _n(rng.randint(0, 24)),
        "preferred_category": _s(rng.choice(CATEGORIES)),
        "open_ticket": _b(rng.random() < 0.1),
        "newsletter": _b(rng.random() < 0.5),
        "region": _s(f"r{rng.randint(1, 12)}"),
        "orders_total": _n(rng.randint(0, 200)),
    }
    return [
        tpb.FeatureGroup(namespace="user", features=user_features(rng)),
        tpb.FeatureGroup(namespace="history", features=history_features(rng)),
        tpb.FeatureGroup(namespace="crm", features=crm),
        tpb.FeatureGroup(namespace="consent", features={CHANNEL: _b(True)}),
    ]


def live_context(rng: random.Random) -> list[tpb.FeatureGroup]:
    """What only the caller knows at the moment of the call: 5 session features."""
    return [tpb.FeatureGroup(namespace="session", features=session_features(rng))]


def contact_policy() -> tpb.ContactPolicy:
    """The catalog scenario's rules: every one is evaluated on every Rank."""
    policy = tpb.ContactPolicy(suppress_after_ignored=3, consent_namespace="consent")
    policy.ignored_window.FromSeconds(7 * DAY_S)
    per_offer = policy.frequency_caps.add(scope=tpb.CAP_SCOPE_ACTION, max_exposures=3)
    per_offer.window.FromSeconds(DAY_S)
    per_channel = policy.frequency_caps.add(scope=tpb.CAP_SCOPE_CHANNEL, channel=CHANNEL, max_exposures=50)
    per_channel.window.FromSeconds(7 * DAY_S)
    return policy


@dataclass
class Workload:
    """Rank requests to cycle through, and what the server must hold before they make sense."""

    scenario: str
    requests: list[bytes]
    profiles: list[tuple[str, list[tpb.FeatureGroup]]] = field(default_factory=list)
    catalog: list[tpb.Action] = field(default_factory=list)
    contact_policy: tpb.ContactPolicy | None = None


def build_workload(scenario: str, seed: int, pool: int, actions: int, catalog_size: int, subjects: int) -> Workload:
    """The scenario's requests (``actions`` candidates each, or a catalog of ``actions`` offers), serialized."""
    if scenario == "inline":
        return Workload(scenario, build_rank_requests(seed, pool, actions, catalog_size))
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    rng = random.Random(seed)
    offers = build_catalog(rng, catalog_size if scenario == "profile" else actions)
    ids = [f"subject-{i:07d}" for i in range(subjects)]
    profiles = [(subject, build_profile(rng)) for subject in ids]
    requests = []
    for i in range(max(pool, subjects)):  # every stored subject is ranked in turn
        request = dpb.RankRequest(
            decision_point=DECISION_POINT, subject_id=ids[i % subjects], channel=CHANNEL, context=live_context(rng)
        )
        if scenario == "profile":
            request.actions.extend(rng.sample(offers, actions))
        requests.append(request.SerializeToString())
    if scenario == "profile":
        return Workload(scenario, requests, profiles)
    return Workload(scenario, requests, profiles, catalog=offers, contact_policy=contact_policy())
