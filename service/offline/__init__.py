"""Offline tooling: export of logged decisions, counterfactual evaluation of learner configurations."""
