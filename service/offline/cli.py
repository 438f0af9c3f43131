"""The offline subcommands of ``kairos``: export, import-logs, evaluate, tune and importance.

Kept apart from the serving commands; heavy imports happen inside the handlers so ``kairos --help`` and
``kairos serve`` do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.offline.spec import SEARCH_SPACE, format_spec, parse_spec

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.domain import DecisionPointConfig

COMMANDS = ("export", "import-logs", "evaluate", "tune", "importance")

EXPORT_EPILOG = """\
Only closed decisions are written: rewarded, or whose reward window passed (the decision point's
default reward is applied, and marked in _kairos.default_reward). Decisions still inside their reward
window, and deferred decisions that were never activated (never shown), are counted but not written.
Works while a server runs on the same data directory.

examples:
  kairos export --decision-point offers -o offers.dsjson
  kairos export --decision-point offers --since 2026-01-01 --until 2026-01-08T00:00Z | gzip > week.dsjson.gz
"""


INTERVAL_OPTION: dict[str, Any] = {
    "choices": ("bernstein", "normal"),
    "default": "bernstein",
    "help": "intervals of IPS and DR: bernstein (empirical Bernstein: valid at any sample size, conservative, "
    "wide when logging probabilities are small) or normal (normal approximation: tight, asymptotic; "
    "trust it when the effective sample size, ESS, is large). Default: bernstein",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = sub.add_parser(
        "export",
        help="write a decision point's logged decisions as VW DSJSON",
        description="Write a decision point's closed decisions, joined with their rewards, as VW DSJSON "
        "(one event per line, readable by VW's --dsjson parser and by `kairos evaluate`).",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--decision-point", required=True, metavar="NAME", help="the decision point to export")
    export.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's data directory (default: KAIROS_DATA_DIR, else ./kairos-data)",
    )
    export.add_argument("--since", metavar="ISO-8601", help="only decisions ranked at or after this (no zone: UTC)")
    export.add_argument("--until", metavar="ISO-8601", help="only decisions ranked before this time (UTC if no zone)")
    export.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    export.add_argument("--quiet", action="store_true", help="no progress lines on standard error")
    add_import_parser(sub)
    add_evaluate_parser(sub)
    add_tune_parser(sub)
    add_importance_parser(sub)


EVALUATE_EPILOG = """\
SPEC grammar:  EXPLORER[:KEY=VALUE,...]
  explorers: squarecb (gamma_scale), epsilon (epsilon), regcb (mellowness), bag (bag_size, epsilon),
             cover (cover_size, psi), softmax (lambda)
  any explorer: interactions (* | none | user*offer+situation*offer; default _context*_actions),
                learning_rate (lr), power_t, l2, bits
  unset keys take the service's defaults.

Each policy replays the logs in order with a fresh learner, predicting each event before learning from
it (progressive validation). Estimates: IPS and doubly robust (DR) with empirical Bernstein intervals,
self-normalised IPS (SNIPS) with bootstrap intervals. The logged policy and uniform random are always
included. Lines that cannot be used (missing fields, probability 0 or above 1, NaN rewards, truncated
JSON) are left out and listed with their line numbers.

examples:
  kairos evaluate offers.dsjson
  kairos evaluate offers.dsjson --policy squarecb:gamma_scale=50 --policy epsilon:epsilon=0.1,lr=0.1 \\
      --out offers-eval.json          (also writes offers-eval.png)
"""


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    evaluate = sub.add_parser(
        "evaluate",
        help="estimate how other learner configurations would have done on logged decisions",
        description="Counterfactual evaluation of learner configurations on DSJSON logs (from `kairos export` "
        "or another system): a table on the terminal, and JSON and a PNG chart on request.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("logs", type=Path, metavar="LOGS", help="DSJSON file, one event per line")
    evaluate.add_argument(
        "--policy",
        action="append",
        metavar="SPEC",
        help="a configuration to evaluate (repeatable; default: a few common ones, see below)",
    )
    evaluate.add_argument("--out", type=Path, help="write the results as JSON here")
    evaluate.add_argument("--chart", type=Path, help="write a PNG chart here (default: --out with .png)")
    evaluate.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    evaluate.add_argument(
        "--reward-range",
        metavar="LOW,HIGH",
        help="bounds of a reward (default: as exported with the logs, else the rewards seen)",
    )
    evaluate.add_argument("--seed", type=int, default=1, help="seed of the learners and the bootstrap")
    evaluate.add_argument("--interval", **INTERVAL_OPTION)


TUNE_EPILOG = (
    """\
Rule: a candidate is recommended only when the lower bound of its interval beats the current
configuration's point estimate; intervals are Bonferroni-corrected for the number of candidates (each
at 1 - (1 - confidence) / k), and among those that pass the highest lower bound wins. Every run is
recorded as JSON in --record-dir. --apply NAME takes the current configuration from the running
decision point and updates it when there is a recommendation (a change of explorer kind, gamma_scale,
mellowness, interactions or bits starts a fresh model; other changes keep the learned one).

default search space (replace it with --candidate SPEC ...):
  """
    + "\n  ".join(SEARCH_SPACE)
    + """

example:
  kairos tune offers.dsjson --current squarecb:gamma_scale=10,interactions=user*offer
  kairos tune offers.dsjson --apply offers --port 50051 --token-file admin.token
"""
)


def add_tune_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tune = sub.add_parser(
        "tune",
        help="search learner configurations on logged decisions; recommend one only when clearly better",
        description="Evaluate a space of learner configurations on DSJSON logs (as `kairos evaluate` does) and "
        "recommend one only when it beats the current configuration with confidence.",
        epilog=TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("logs", type=Path, metavar="LOGS", help="DSJSON file, one event per line")
    tune.add_argument(
        "--current",
        default=None,
        metavar="SPEC",
        help="the configuration in production (default: with --apply, the decision point's; else squarecb)",
    )
    tune.add_argument("--candidate", action="append", metavar="SPEC", help="a configuration to try (repeatable)")
    tune.add_argument("--estimator", choices=("dr", "snips", "ips"), default="dr", help="the estimate the rule uses")
    tune.add_argument("--confidence", type=float, default=0.95, help="family-wide level (default 0.95)")
    tune.add_argument("--reward-range", metavar="LOW,HIGH", help="bounds of a reward (default: as in the logs)")
    tune.add_argument("--seed", type=int, default=1, help="seed of the learners and the bootstrap")
    tune.add_argument("--interval", **INTERVAL_OPTION)
    tune.add_argument(
        "--apply",
        metavar="NAME",
        help="read the current configuration from decision point NAME on a running server, and update it to "
        "the recommendation if there is one (AdminService.UpdateDecisionPoint)",
    )
    tune.add_argument("--token-file", type=Path, help="with --apply: file holding a token with the admin scope")
    from service.cli import _connection_arguments

    _connection_arguments(tune)
    tune.add_argument(
        "--record-dir", type=Path, default=Path("kairos-tune-runs"), help="where each run is recorded (JSON)"
    )


def run(args: argparse.Namespace) -> int:
    if args.command == "export":
        return _export(args)
    if args.command == "import-logs":
        return _import_logs(args)
    if args.command == "importance":
        return _importance(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "tune":
        return _tune(args)
    raise AssertionError(args.command)


def _export(args: argparse.Namespace) -> int:
    from service import settings as settings_module
    from service.offline import dsjson
    from service.offline.export import NO_END, ExportError, ExportProgress, export, open_store

    try:
        since = dsjson.parse_timestamp(args.since) if args.since else 0
        until = dsjson.parse_timestamp(args.until) if args.until else NO_END
    except ValueError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    data_dir = args.data_dir or settings_module.load().data_dir

    def report(progress: ExportProgress) -> None:
        if not args.quiet:
            at = f", up to {dsjson.iso_timestamp(progress.last_ranked_ms)}" if progress.last_ranked_ms else ""
            print(f"kairos export: {progress.describe()}{at}", file=sys.stderr, flush=True)

    try:
        store = open_store(data_dir)
    except ExportError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    try:
        out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            done = export(store, args.decision_point, out, since_ms=since, until_ms=until, progress=report)
        finally:
            if args.output:
                out.close()
    except ExportError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()
    report(done)
    return 0


def _reward_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--reward-range {text!r} must be two numbers, LOW,HIGH (for example 0,1)") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"--reward-range {text!r} must be finite with LOW < HIGH")
    return low, high


def _evaluate(args: argparse.Namespace) -> int:

    from service.offline import evaluate as evaluation_module
    from service.offline.spec import DEFAULT_SPECS, SpecError, parse_spec

    try:
        bounds = _reward_range(args.reward_range)
        specs = args.policy or list(DEFAULT_SPECS)
        candidates = [evaluation_module.Candidate(spec, parse_spec(spec)) for spec in specs]
        if not 0.0 < args.confidence < 1.0:
            raise ValueError(f"--confidence {args.confidence} must be within (0, 1), for example 0.95")
    except (SpecError, ValueError) as err:
        print(f"kairos evaluate: {err}", file=sys.stderr)
        return 2

    def report(events: int) -> None:
        if events % 10_000 == 0:
            print(f"kairos evaluate: replayed {events} events", file=sys.stderr, flush=True)

    try:
        result = evaluation_module.evaluate(
            args.logs,
            candidates,
            reward_range=bounds,
            confidence=args.confidence,
            seed=args.seed,
            progress=report,
            interval=args.interval,
        )
    except evaluation_module.EvaluationError as err:
        print(f"kairos evaluate: {err}", file=sys.stderr)
        return 2
    print(evaluation_module.table(result))
    return _write_results("evaluate", result.to_dict(), args, lambda path: evaluation_module.chart(result, path))


def _tune(args: argparse.Namespace) -> int:
    from service.offline import evaluate as evaluation_module
    from service.offline import tune as tune_module
    from service.offline.spec import SpecError

    applier = None
    try:
        if args.apply:
            applier = _Applier(args)
            current = applier.deployed_spec()
            if args.current and parse_spec(args.current) != parse_spec(current):
                raise ValueError(f"--current {args.current!r} differs from {args.apply!r}'s configuration {current!r}")
        else:
            current = args.current or "squarecb"
        bounds = _reward_range(args.reward_range)
        if not 0.0 < args.confidence < 1.0:
            raise ValueError(f"--confidence {args.confidence} must be within (0, 1), for example 0.95")
        result = tune_module.tune(
            args.logs,
            current=current,
            candidates=args.candidate or SEARCH_SPACE,
            estimator=args.estimator,
            confidence=args.confidence,
            reward_range=bounds,
            seed=args.seed,
            interval=args.interval,
        )
    except (SpecError, ValueError, evaluation_module.EvaluationError, ApplyError) as err:
        if applier is not None:
            applier.close()
        print(f"kairos tune: {err}", file=sys.stderr)
        return 2
    print(evaluation_module.table(result.evaluation))
    print()
    print(result.explanation)
    status = 0
    if applier is not None:
        try:
            if result.recommended is not None:
                result.applied = applier.apply(result.recommended.label)
                print(result.applied)
        except ApplyError as err:
            result.applied = f"not applied: {err}"
            print(f"kairos tune: {err}", file=sys.stderr)
            status = 1
        finally:
            applier.close()
    try:
        path = tune_module.record(result, args.record_dir)
    except OSError as err:
        print(f"kairos tune: the run could not be recorded: {err}", file=sys.stderr)
        return 1
    print(f"recorded in {path}")
    return status


class ApplyError(RuntimeError):
    """The recommendation could not be applied to the decision point; the message says why."""


class _Applier:
    """Reads and updates the decision point named by ``--apply`` through the Admin API."""

    def __init__(self, args: argparse.Namespace) -> None:
        import grpc

        from service._pb.kairos.v1 import admin_service_pb2 as admin_pb
        from service._pb.kairos.v1 import admin_service_pb2_grpc as admin_grpc
        from service.cli import _channel
        from service.grpc import converters

        self.name = args.apply
        token = args.token_file.read_text().strip() if args.token_file else ""
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.channel, self.target = _channel(args)
        self.admin = admin_grpc.AdminServiceStub(self.channel)
        try:
            found = self.admin.GetDecisionPoint(
                admin_pb.GetDecisionPointRequest(name=self.name), timeout=30, metadata=self.metadata
            )
        except grpc.RpcError as err:
            self.channel.close()
            raise ApplyError(f"{self.target}: {err.code().name}: {err.details()}") from None
        self.deployed = converters.learner_options(found.exploration, found.learning)

    def close(self) -> None:
        self.channel.close()

    def deployed_spec(self) -> str:
        return format_spec(self.deployed)

    def apply(self, spec: str) -> str:
        import grpc
        from google.protobuf import field_mask_pb2

        from service._pb.kairos.v1 import admin_service_pb2 as admin_pb
        from service._pb.kairos.v1 import types_pb2 as types_pb
        from service.grpc import converters

        options = parse_spec(spec)
        if not options.interactions:
            # The API reads an empty interaction list as its default, every pair: "none" cannot be set.
            raise ApplyError(f"{spec!r} has no interactions, which the Admin API cannot express; set it by hand")
        reset = not options.same_shape(self.deployed)
        request = admin_pb.UpdateDecisionPointRequest(
            decision_point=types_pb.DecisionPoint(
                name=self.name,
                exploration=converters.exploration_pb(options.explorer),
                learning=converters.learning_pb(options),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["exploration", "learning"]),
            reset_model=reset,
        )
        try:
            self.admin.UpdateDecisionPoint(request, timeout=60, metadata=self.metadata)
        except grpc.RpcError as err:
            raise ApplyError(f"{self.target}: {err.code().name}: {err.details()}") from None
        model = "a fresh model (the change alters the model's shape)" if reset else "the learned model carried over"
        return f"applied {spec!r} to {self.name!r}: {model}"


IMPORT_EPILOG = """\
Formats (default: from the file name: .csv, .jsonl/.ndjson, anything else DSJSON; .gz is read too):
  dsjson  VW / Personalizer DSJSON, or a `kairos export`: _label_cost, _label_probability, _labelIndex,
          a, p, c (namespaces as objects, actions in c._multi; an action's id is its _tag)
  jsonl   {"event_id": "e-1", "timestamp": "2026-01-05T10:00:00Z",
           "context": {"user": {"tier": "gold", "age": 41}},
           "actions": [{"id": "offer-1", "features": {"offer": {"price": 2}}}, "offer-2"],
           "chosen_action": "offer-1", "probability": 0.5, "reward": 1}
  csv     header: actions (ids separated by ;), chosen_action, probability, reward, optional event_id,
          timestamp, probabilities (; separated, in the order of actions), action_features (JSON:
          id -> {namespace: {feature: value}}); other columns are context features, namespace.feature:
            event_id,actions,chosen_action,probability,reward,user.tier,user.age
            e-1,offer-1;offer-2,offer-1,0.5,1,gold,41

Rows without a usable probability (missing, 0, above 1, NaN), with bad JSON, a chosen action that is not
among the row's actions, a missing or non-finite reward or one outside the decision point's reward range,
and a truncated last line are left out and listed with their line numbers and a count per reason.

Valid rows are written as DSJSON exactly as `kairos export` writes it (features and namespace indices as
the decision point's model sees them), for `kairos evaluate` and `kairos tune`. --learn also learns them
into the decision point's model, with their logged probabilities, as a new model generation (like
AdminService.ImportModel; audited): stop the server first, the data directory is locked.

examples:
  kairos import-logs last-year.csv --decision-point offers --dry-run
  kairos import-logs last-year.csv --decision-point offers -o offers-history.dsjson
  kairos evaluate offers-history.dsjson
  kairos import-logs personalizer.json --format dsjson --decision-point offers --learn --data-dir /data
"""


def add_import_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "import-logs",
        help="check historical decision logs from another system; write them as DSJSON and/or warm-start a model",
        description="Read logged decisions (DSJSON, CSV or JSON Lines) from another system, report the rows that "
        "cannot be used, and write the others as DSJSON for `kairos evaluate`/`tune` (-o) or learn them into a "
        "decision point's model (--learn).",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the logs, one decision per row")
    parser.add_argument("--decision-point", required=True, metavar="NAME", help="the decision point they are for")
    parser.add_argument("--format", choices=("dsjson", "csv", "jsonl"), help="default: from the file name")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the data directory with the decision point (default: KAIROS_DATA_DIR, else ./kairos-data); "
        "its namespace table and reward range apply when it exists",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the valid rows as DSJSON here (- for stdout)")
    parser.add_argument("--dry-run", action="store_true", help="only check the rows and report; write nothing")
    parser.add_argument(
        "--learn", action="store_true", help="learn the valid rows into the decision point's model (server stopped)"
    )
    parser.add_argument("--report", type=Path, help="write the report (counts, every bad row) as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on standard error")


def _one_reward_range(config: DecisionPointConfig) -> tuple[float, float] | None:
    """The range every imported reward must keep; none when the decision point sums rewards or learns reward
    times business value (those may leave the range of one reward)."""
    if config.aggregation != "first" or config.optimize_value:
        return None
    return config.reward_min, config.reward_max


def _import_logs(args: argparse.Namespace) -> int:
    import time
    from contextlib import ExitStack

    from policies.features import NamespaceTable
    from service import settings as settings_module
    from service.offline import log_import
    from service.offline.export import ExportError, find_record, open_store
    from service.offline.warm_start import WarmStart, WarmStartError
    from service.store.lmdb_store import DataDirError

    def say(text: str) -> None:
        print(f"kairos import-logs: {text}", file=sys.stderr, flush=True)

    if not args.dry_run and not args.learn and not args.output:
        say("say where the valid rows go: -o FILE (or -o - for standard output), --learn, or --dry-run to only check")
        return 2
    settings = settings_module.load()
    data_dir = args.data_dir or settings.data_dir
    fmt = args.format or log_import.guess_format(args.file)
    with ExitStack() as stack:
        warm: WarmStart | None = None
        table: NamespaceTable = NamespaceTable()
        reward_range: tuple[float, float] | None = None
        try:
            if args.learn and not args.dry_run:
                warm = WarmStart(settings, data_dir, args.decision_point)
                stack.callback(warm.close)
                table, reward_range = warm.record.namespaces, _one_reward_range(warm.record.config)
            elif (data_dir / "lmdb" / "data.mdb").is_file():
                store = open_store(data_dir)
                stack.callback(store.close)
                record = find_record(store, args.decision_point)
                table, reward_range = record.namespaces.copy(), _one_reward_range(record.config)
            elif args.learn:
                raise WarmStartError(f"no Kairos data in {data_dir}; pass the server's --data-dir")
            else:
                say(f"no data directory at {data_dir}: namespaces are indexed afresh and no reward range is checked")
        except (ExportError, WarmStartError, DataDirError) as err:
            say(str(err))
            return 2

        uses: list[Callable[[log_import.Normalized], object]] = []
        if args.output and not args.dry_run:
            try:
                out = sys.stdout if args.output == "-" else stack.enter_context(Path(args.output).open("w"))
            except OSError as err:
                say(str(err))
                return 1
            uses.append(lambda event: out.write(event.event + "\n"))
        if warm is not None:
            uses.append(warm.learn)

        started = time.monotonic()

        def use(event: log_import.Normalized) -> None:
            for each in uses:
                each(event)

        def progress(report: log_import.ImportReport) -> None:
            if not args.quiet:
                rate = report.lines / max(time.monotonic() - started, 1e-9)
                say(f"{report.summary()} ({rate:,.0f} rows/s)")

        normalizer = log_import.Normalizer(args.decision_point, table, reward_range, int(time.time() * 1000))
        try:
            report = log_import.import_rows(args.file, fmt, normalizer, use, progress=progress)
        except (log_import.LogImportError, OSError) as err:
            say(str(err))
            return 2
        say(report.summary())
        for line in report.details():
            print(line, file=sys.stderr)
        if report.namespaces_added:
            say(f"namespaces new to {args.decision_point!r}: {', '.join(report.namespaces_added)}")
        if warm is not None:
            if report.imported:
                try:
                    report.learned = warm.learned
                    report.model_version = warm.commit(args.file.name, report.namespaces_added)
                except WarmStartError as err:
                    say(str(err))
                    return 1
                say(f"learned {warm.learned} events into {args.decision_point!r}: model version {report.model_version}")
            else:
                say("nothing learned: no usable rows")
        if args.report:
            args.report.write_text(json.dumps({"format": fmt, **report.to_dict()}, indent=2) + "\n")
    return 0 if report.imported else 1


IMPORTANCE_EPILOG = """\
The policy (a SPEC, as for kairos evaluate) replays the logs with every feature and, in the same pass, once
without each namespace; a namespace's importance is the drop in the policy's estimated value (doubly
robust) without it, with a paired interval (the same events, the same reward model). Verdicts: "matters"
(the whole interval above 0), "hurts" (below 0: the policy does better without it), "no clear effect".
--features repeats it for each feature (every value of a categorical feature together) of the --top
namespaces. For logs from another system, run them through `kairos import-logs` first.

examples:
  kairos importance offers.dsjson
  kairos importance offers.dsjson --policy squarecb:gamma_scale=50 --features --out importance.json
"""


def add_importance_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "importance",
        help="rank namespaces (and features) by how much a policy's estimated value drops without them",
        description="Feature importance by ablation through the offline evaluator, on DSJSON logs.",
        epilog=IMPORTANCE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("logs", type=Path, metavar="LOGS", help="DSJSON file, one event per line")
    parser.add_argument("--policy", default="squarecb", metavar="SPEC", help="the configuration (default squarecb)")
    parser.add_argument("--features", action="store_true", help="also rank the features of the top namespaces")
    parser.add_argument("--top", type=int, default=3, help="with --features: how many namespaces (default 3)")
    parser.add_argument(
        "--weights",
        action="store_true",
        help="also each namespace's share of the learned model's weight magnitude (VW --invert_hash; one more pass)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here (default: --out with .png)")
    parser.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    parser.add_argument("--reward-range", metavar="LOW,HIGH", help="bounds of a reward (default: as in the logs)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the learners")
    parser.add_argument("--interval", **INTERVAL_OPTION)


def _importance(args: argparse.Namespace) -> int:

    from service.offline import importance
    from service.offline.evaluate import EvaluationError
    from service.offline.spec import SpecError

    def report(events: int) -> None:
        if events % 10_000 == 0:
            print(f"kairos importance: replayed {events} events", file=sys.stderr, flush=True)

    try:
        bounds = _reward_range(args.reward_range)
        if not 0.0 < args.confidence < 1.0:
            raise ValueError(f"--confidence {args.confidence} must be within (0, 1), for example 0.95")
        result = importance.feature_importance(
            args.logs,
            args.policy,
            features=args.features,
            top=args.top,
            reward_range=bounds,
            confidence=args.confidence,
            seed=args.seed,
            interval=args.interval,
            weights=args.weights,
            progress=report,
        )
    except (SpecError, ValueError, EvaluationError) as err:
        print(f"kairos importance: {err}", file=sys.stderr)
        return 2
    print(importance.table(result))
    return _write_results("importance", result.to_dict(), args, lambda path: importance.chart(result, path))


def _write_results(
    command: str, result: dict[str, Any], args: argparse.Namespace, chart: Callable[[Path], None]
) -> int:
    """``--out`` JSON and the chart (``--chart``, or beside the JSON); a missing matplotlib only skips the chart."""
    try:
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        chart_path = args.chart or (args.out.with_suffix(".png") if args.out else None)
        if chart_path:
            try:
                chart(chart_path)
            except ImportError:
                print(
                    f"kairos {command}: matplotlib is not installed (install the bench extra: kairos[bench]); "
                    "no chart written",
                    file=sys.stderr,
                )
    except OSError as err:
        print(f"kairos {command}: {err}", file=sys.stderr)
        return 1
    return 0
