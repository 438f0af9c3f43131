"""The load benchmarks' workload: an offer catalog, customer context and Rank requests built from a seed."""

from __future__ import annotations

import random

from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb

DECISION_POINT = "demo"

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


def build_context(rng: random.Random) -> list[tpb.FeatureGroup]:
    """15 context features, in three namespaces for 3 requests in 4 and in two for the rest."""
    user = {
        "segment": _s(rng.choice(SEGMENTS)),
        "age": _n(rng.randint(18, 80)),
        "tenure_days": _n(rng.randint(0, 3000)),
        "country": _s(rng.choice(COUNTRIES)),
        "member": _b(rng.random() < 0.4),
        "plan": _s(rng.choice(("free", "plus", "pro"))),
    }
    session = {
        "device": _s(rng.choice(DEVICES)),
        "hour": _n(rng.randint(0, 23)),
        "weekday": _s(rng.choice(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))),
        "referrer": _s(rng.choice(REFERRERS)),
        "pages_viewed": _n(rng.randint(1, 40)),
    }
    history = {
        "clicks_7d": _n(rng.randint(0, 50)),
        "purchases_30d": _n(rng.randint(0, 10)),
        "last_category": _s(rng.choice(CATEGORIES)),
        "avg_basket": _n(round(rng.uniform(10, 300), 2)),
    }
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
