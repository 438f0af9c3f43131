"""Holdout, transport-free: which subjects the model never serves, and what they get instead.

A subject is held out when a stable hash of the decision point's name and its subject id, read as a
number in [0, 1), falls below the holdout share: the same subject is always in or always out, the
decision points' holdouts are independent, and raising the share only adds subjects.
"""

from __future__ import annotations

import hashlib

from policies.ranking import Ranking, sample


def position(decision_point: str, subject_id: str) -> float:
    """The subject's fixed place in [0, 1) for this decision point."""
    digest = hashlib.blake2b(f"{decision_point}\x00{subject_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2.0**64


def held_out(decision_point: str, subject_id: str, share: float) -> bool:
    return bool(subject_id) and share > 0.0 and position(decision_point, subject_id) < share


def baseline_first(count: int, baseline: int) -> Ranking:
    """The baseline with probability 1, the others in the order given."""
    order = (baseline, *(i for i in range(count) if i != baseline))
    return Ranking(order=order, probabilities=tuple(1.0 if i == baseline else 0.0 for i in range(count)))


def uniform(count: int, draw: float) -> Ranking:
    """The first action drawn uniformly with ``draw`` (each has probability 1/count), the others in order."""
    probabilities = tuple(1.0 / count for _ in range(count))
    first = sample(probabilities, draw)
    return Ranking(order=(first, *(i for i in range(count) if i != first)), probabilities=probabilities)
