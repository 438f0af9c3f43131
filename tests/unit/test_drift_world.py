"""The drift benchmark's simulator and stale batch model behave as their descriptions say."""

from __future__ import annotations

import random

import numpy as np

from benchmarks.drift import (
    NEW_CATEGORY,
    BatchModel,
    Scenario,
    Visit,
    World,
    batch_policy,
    expected,
    fit_logistic,
    logged_data,
    one_hot,
    oracle_policy,
    uniform_policy,
)


def test_the_oracle_beats_uniform_by_far() -> None:
    scenario = Scenario.make(seed=3, rounds=2000)
    oracle = expected(scenario, oracle_policy(scenario)).mean()
    uniform = expected(scenario, uniform_policy(scenario)).mean()
    assert oracle > 2 * uniform


def test_the_drift_changes_the_best_action_for_many_visits_and_adds_offers() -> None:
    world = World(seed=5)
    visits = world.visits(random.Random(1), 2000)
    before = [int(np.argmax(world.click_probabilities(v, world.catalog_before, drifted=False))) for v in visits]
    after_old_catalog = [
        int(np.argmax(world.click_probabilities(v, world.catalog_before, drifted=True))) for v in visits
    ]
    changed = sum(b != a for b, a in zip(before, after_old_catalog, strict=True)) / len(visits)
    assert changed > 0.3  # tastes changed, not just the catalog
    new = {o.id for o in world.catalog_after} - {o.id for o in world.catalog_before}
    assert new and all(o.startswith(NEW_CATEGORY) for o in new)


def test_an_open_ticket_makes_the_matching_service_action_best() -> None:
    world = World(seed=2)
    customer = world.customers[0]
    ids = [o.id for o in world.catalog_after]
    sales = [o.category != "service" for o in world.catalog_after]
    for ticket, best in (("technical", "fix-my-problem"), ("billing", "billing-help")):
        visit = Visit(customer, "web", "ios", ticket, False, 0.5, 0.5)
        probabilities = world.click_probabilities(visit, world.catalog_after, drifted=True)
        assert ids[int(np.argmax(probabilities))] == best
        best_sale = max(p for p, sale in zip(probabilities, sales, strict=True) if sale)
        assert max(probabilities) > 5 * best_sale


def test_logistic_regression_recovers_a_known_effect() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(20000), rng.integers(0, 2, 20000), rng.normal(size=20000)])
    truth = np.array([-1.0, 2.0, -0.5])
    y = (rng.random(20000) < 1 / (1 + np.exp(-(x @ truth)))).astype(float)
    w = fit_logistic(x, y, l2=1e-3)
    assert np.allclose(w, truth, atol=0.1)


def test_the_batch_model_learns_the_ticket_effect_and_knows_nothing_of_new_offers() -> None:
    world = World(seed=4)
    model = BatchModel.fit(logged_data(world, seed=4, count=4000))
    customer = world.customers[1]
    calm = Visit(customer, "web", "ios", "", False, 0.5, 0.5)
    angry = Visit(customer, "web", "ios", "technical", False, 0.5, 0.5)
    assert model.score(angry, "fix-my-problem") > 3 * model.score(calm, "fix-my-problem")
    assert model.score(calm, f"{NEW_CATEGORY}-0") == model.unseen_score
    assert one_hot(angry).shape == one_hot(calm).shape


def test_the_stale_batch_model_loses_much_of_its_click_rate_after_the_drift() -> None:
    scenario = Scenario.make(seed=0, rounds=4000)
    model = BatchModel.fit(logged_data(scenario.world, seed=0, count=4000))
    rates = expected(scenario, batch_policy(scenario, model))
    before, after = rates[: scenario.drift_at].mean(), rates[scenario.drift_at :].mean()
    assert after < 0.8 * before
