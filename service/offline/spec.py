"""The small grammar of learner configurations on the command line.

    SPEC     := EXPLORER [":" SETTING ("," SETTING)*]
    EXPLORER := squarecb | epsilon | regcb | bag | cover | softmax
    SETTING  := KEY "=" VALUE

Keys, all optional (defaults are the service's):

- every explorer: ``interactions`` (``*`` for all pairs, ``none``, or pairs/triples of namespace names
  joined by ``+``: ``user*offer+situation*offer``; ``_context`` and ``_actions`` stand for every context
  or action namespace, and ``_context*_actions`` is the default), ``learning_rate`` (or ``lr``),
  ``power_t``, ``l2``, ``bits``
- squarecb: ``gamma_scale``; epsilon: ``epsilon``; regcb: ``mellowness``; bag: ``bag_size``,
  ``epsilon``; cover: ``cover_size``, ``psi``; softmax: ``lambda``

A SPEC becomes :class:`policies.learner_options.LearnerOptions`, whose range checks apply: only these
allow-listed options ever reach VW.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from policies.learner_options import ALL_PAIRS, Explorer, ExplorerKind, LearnerOptions, OptionsError

KINDS: dict[str, ExplorerKind] = {
    "squarecb": "square_cb",
    "epsilon": "epsilon_greedy",
    "regcb": "reg_cb",
    "bag": "bag",
    "cover": "cover",
    "softmax": "softmax",
}
EXPLORER_KEYS: dict[str, dict[str, str]] = {
    "squarecb": {"gamma_scale": "gamma_scale"},
    "epsilon": {"epsilon": "epsilon"},
    "regcb": {"mellowness": "mellowness"},
    "bag": {"bag_size": "bag_size", "epsilon": "epsilon"},
    "cover": {"cover_size": "cover_size", "psi": "psi"},
    "softmax": {"lambda": "softmax_lambda"},
}
LEARNER_KEYS = {"learning_rate": "learning_rate", "lr": "learning_rate", "power_t": "power_t", "l2": "l2"}
INTEGER_FIELDS = {"bag_size", "cover_size", "bits"}
# `kairos tune`'s default space, around the service's defaults: explorer strength, learning rate, interactions.
SEARCH_SPACE = (
    "squarecb",
    "squarecb:gamma_scale=50",
    "squarecb:gamma_scale=200",
    "squarecb:learning_rate=0.1",
    "squarecb:learning_rate=2",
    "squarecb:interactions=none",
    "epsilon:epsilon=0.05",
    "epsilon:epsilon=0.2",
    "regcb",
)
DEFAULT_SPECS = ("squarecb", "squarecb:gamma_scale=50", "epsilon:epsilon=0.05", "squarecb:interactions=none")


class SpecError(ValueError):
    """A SPEC that does not parse or is out of range; the message says which part and what is allowed."""


def _number(spec: str, key: str, text: str, integer: bool) -> float | int:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise SpecError(f"{spec!r}: {key}={text!r} is not {kind}") from None


def parse_spec(spec: str) -> LearnerOptions:
    """``squarecb:gamma_scale=20,interactions=user*offer`` as LearnerOptions; SpecError when invalid."""
    name, _, settings = spec.strip().partition(":")
    name = name.strip()
    if name not in KINDS:
        raise SpecError(f"{spec!r}: the explorer must be one of {', '.join(KINDS)}")
    explorer: dict[str, Any] = {"kind": KINDS[name]}
    learner: dict[str, Any] = {}
    allowed = {**EXPLORER_KEYS[name], **LEARNER_KEYS, "interactions": "interactions", "bits": "bits"}
    for setting in filter(None, (part.strip() for part in settings.split(","))):
        key, sep, value = setting.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise SpecError(f"{spec!r}: {setting!r} must be KEY=VALUE")
        if key not in allowed:
            raise SpecError(f"{spec!r}: {key!r} is not a setting of {name}; it takes {', '.join(sorted(allowed))}")
        field = allowed[key]
        if field == "interactions":
            learner["interactions"] = parse_interactions(value)
        elif key in EXPLORER_KEYS[name]:
            explorer[field] = _number(spec, key, value, field in INTEGER_FIELDS)
        else:
            learner[field] = _number(spec, key, value, field in INTEGER_FIELDS)
    options = replace(LearnerOptions(), explorer=Explorer(**explorer), **learner)
    try:
        options.validate()
    except OptionsError as err:
        raise SpecError(f"{spec!r}: {err}") from None
    return options


def parse_interactions(value: str) -> tuple[str, ...]:
    if value == ALL_PAIRS:
        return (ALL_PAIRS,)
    if value == "none":
        return ()
    return tuple(part.strip() for part in value.split("+") if part.strip())


def namespaces_used(options: LearnerOptions) -> set[str]:
    """The namespace names a configuration's interactions mention."""
    return {name for spec in options.interactions if spec != ALL_PAIRS for name in spec.split("*")}


def format_spec(options: LearnerOptions) -> str:
    """The SPEC of ``options``: the explorer, then every setting that differs from the service's default."""
    name = next(key for key, kind in KINDS.items() if kind == options.explorer.kind)
    settings: list[str] = []
    default_explorer = Explorer(kind=options.explorer.kind)
    for key, field in EXPLORER_KEYS[name].items():
        value = getattr(options.explorer, field)
        if value != getattr(default_explorer, field):
            settings.append(f"{key}={value}")
    default = LearnerOptions()
    if options.interactions != default.interactions:
        settings.append("interactions=" + ("+".join(options.interactions) or "none"))
    for key, field in (("learning_rate", "learning_rate"), ("power_t", "power_t"), ("l2", "l2"), ("bits", "bits")):
        value = getattr(options, field)
        if value != getattr(default, field):
            settings.append(f"{key}={value}")
    return name + (":" + ",".join(settings) if settings else "")
