"""The contextual bandit itself: one Vowpal Wabbit ``cb_explore_adf`` workspace.

Speed: parsing is most of VW's cost, so each action's example is parsed once
and kept in an LRU cache keyed by its text line (which includes the action id
and every feature, so a changed action is a new line). Per request only the
shared example is parsed. Learning reuses the cached action examples and
parses only the shared line and the chosen action's labelled line; examples
built with ``Example(workspace, line)`` free their memory when dropped, unlike
``parse()`` ones, which need ``finish_example``.

A workspace is not thread-safe; callers serialise access (the service runs it
on one thread).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import vowpalwabbit
from vowpalwabbit import LabelType

from policies.features import vw_number
from policies.lru import LRU

_CB = LabelType.CONTEXTUAL_BANDIT
# Never hand VW a probability below this: 1/p is the importance weight of the
# update, and a near-zero p would blow up the weights.
PROBABILITY_FLOOR = 1e-3


class PolicyError(RuntimeError):
    """VW refused a model or produced a prediction that does not match the candidates."""


@dataclass(frozen=True, slots=True)
class Prediction:
    pmf: tuple[float, ...]  # in candidate order
    scores: tuple[float, ...]  # expected cost per candidate (lower is better)


class VWPolicy:
    def __init__(self, args: Sequence[str], model: bytes | None = None, cache_size: int = 8192) -> None:
        self.args = list(args)
        self._cache: LRU[str, vowpalwabbit.Example] = LRU(cache_size)
        if model is None:
            self._vw = vowpalwabbit.Workspace(arg_list=self.args)
            return
        with tempfile.NamedTemporaryFile(suffix=".vw") as handle:
            handle.write(model)
            handle.flush()
            try:
                self._vw = vowpalwabbit.Workspace(arg_list=[*self.args, "-i", handle.name])
            except Exception as err:  # VW raises plain RuntimeErrors on bad files
                raise PolicyError(f"the model could not be loaded: {err}") from None

    def _action_example(self, line: str) -> vowpalwabbit.Example:
        example = self._cache.get(line)
        if example is None:
            example = vowpalwabbit.Example(self._vw, line, _CB)
            self._cache.put(line, example)
        return example

    def predict(self, shared: str, actions: Sequence[str]) -> Prediction:
        examples = [vowpalwabbit.Example(self._vw, shared, _CB)]
        examples += [self._action_example(line) for line in actions]
        pmf = self._vw.predict(examples)
        if len(pmf) != len(actions):
            raise PolicyError(f"VW returned {len(pmf)} probabilities for {len(actions)} actions")
        if not math.isclose(math.fsum(pmf), 1.0, abs_tol=1e-3):
            raise PolicyError(f"VW returned probabilities summing to {math.fsum(pmf):.4f}, not 1")
        scores = tuple(example.get_partial_prediction() for example in examples[1:])
        return Prediction(pmf=tuple(pmf), scores=scores)

    def learn(self, shared: str, actions: Sequence[str], chosen: int, cost: float, probability: float) -> None:
        """Learn that showing ``actions[chosen]`` (logged with ``probability``) cost ``cost``."""
        if not math.isfinite(cost) or not math.isfinite(probability):
            raise PolicyError(f"refusing to learn cost {cost} with probability {probability}")
        p = max(min(probability, 1.0), PROBABILITY_FLOOR)
        labelled = vowpalwabbit.Example(self._vw, f"0:{vw_number(cost)}:{vw_number(p)} {actions[chosen]}", _CB)
        examples = [vowpalwabbit.Example(self._vw, shared, _CB)]
        examples += [labelled if i == chosen else self._action_example(line) for i, line in enumerate(actions)]
        self._vw.learn(examples)

    def score_and_learn(
        self, shared: str, actions: Sequence[str], chosen: int, cost: float, probability: float
    ) -> tuple[float, ...]:
        """The pmf over ``actions`` as the model is, then learn as :meth:`learn` (progressive validation).
        One parse of the shared line serves both calls."""
        if not math.isfinite(cost) or not math.isfinite(probability):
            raise PolicyError(f"refusing to learn cost {cost} with probability {probability}")
        examples = [vowpalwabbit.Example(self._vw, shared, _CB)]
        examples += [self._action_example(line) for line in actions]
        pmf = tuple(self._vw.predict(examples))
        if len(pmf) != len(actions):
            raise PolicyError(f"VW returned {len(pmf)} probabilities for {len(actions)} actions")
        p = max(min(probability, 1.0), PROBABILITY_FLOOR)
        examples[chosen + 1] = vowpalwabbit.Example(
            self._vw, f"0:{vw_number(cost)}:{vw_number(p)} {actions[chosen]}", _CB
        )
        self._vw.learn(examples)
        return pmf

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.vw"
            self._vw.save(str(path))
            return path.read_bytes()

    def save(self, path: Path, durable: bool = True) -> str:
        """Write the model atomically (temp file, rename; with ``durable`` also fsync); return its sha256."""
        return write_model(path, self.to_bytes(), durable)

    def under(self, args: Sequence[str]) -> VWPolicy:
        """This model under another command line of the same shape (new interactions, say): itself when
        nothing changes, else a reloaded copy (VW keeps the weights) and this one is closed."""
        if list(args) == self.args:
            return self
        reloaded = VWPolicy(args, model=self.to_bytes())
        self.close()
        return reloaded

    def close(self) -> None:
        self._cache.clear()
        self._vw.finish()


def write_model(path: Path, data: bytes, durable: bool = True) -> str:
    """Write model bytes atomically (temp file, rename; with ``durable`` also fsync of the file and its
    folder); return their sha256. Plain file I/O, so it may run on another thread than the workspace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".vw")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return hashlib.sha256(data).hexdigest()
