"""``velocast baseline | train | evaluate | promote``: the model lifecycle from a terminal.

``add_ml_commands(subparsers)`` adds the four sub-commands to ``velocast.cli.main``'s parser. Each one
prints its result as JSON on stdout (pipe it to ``jq``) and its progress on stderr: a tqdm bar on
a terminal, otherwise one line per step with the elapsed seconds. Errors the user can fix (bad
hyper-parameters, unknown run, unusable data...) print ``{"error": ...}`` and exit with status 2.

The same functions as the serving sidecar's routes run underneath (``velocast.ml.training``); no
Airflow import.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO

from pydantic import ValidationError

from velocast.settings import VelocastSettings, get_settings

# Exit status of an error the user can fix (argparse uses 2 for usage errors too).
USER_ERROR: Final = 2

Handler = Callable[[argparse.Namespace], int]


class StepProgress:
    """``progress(step, fraction)`` for ``run_training``: tqdm on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, use_tqdm: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self._bar: Any = None
        if use_tqdm is None:
            use_tqdm = self.stream.isatty()
        if use_tqdm:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional: plain lines do
                pass
            else:
                self._bar = tqdm(total=100, file=self.stream, bar_format="{l_bar}{bar}| {elapsed}")

    def __call__(self, step: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.set_description_str(step)
            self._bar.update(round(fraction * 100) - self._bar.n)
            if fraction >= 1:
                self._bar.close()
            return
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:7.1f}s] {fraction:4.0%} {step}", file=self.stream, flush=True)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str, allow_nan=False))


def _user_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    from velocast.ml.models import ModelError
    from velocast.ml.reference_data import BaselineError
    from velocast.ml.registry import RegistryError
    from velocast.ml.training import TrainingDataError

    return (ValidationError, ModelError, TrainingDataError, BaselineError, RegistryError, LookupError, *extra)


def _report_error(error: BaseException) -> int:
    payload: dict[str, Any] = {"error": str(error), "type": type(error).__name__}
    if isinstance(error, ValidationError):
        payload["details"] = error.errors(include_url=False)
    _print_json(payload)
    print(f"error: {error}", file=sys.stderr)
    return USER_ERROR


# --- the commands ------------------------------------------------------------------------------


def cmd_baseline(args: argparse.Namespace, settings: VelocastSettings | None = None) -> int:
    from velocast.ml.reference_data import BaselineLocation, create_baseline

    settings = settings or get_settings()
    progress = StepProgress(use_tqdm=False)
    progress(f"reading, normalising and splitting {args.source}", 0.0)
    try:
        manifest = create_baseline(
            Path(args.source),
            settings,
            split_at=args.split_at,
            test_fraction=args.test_fraction,
            location=None if args.location is None else BaselineLocation.parse(args.location),
        )
    except _user_errors(FileNotFoundError) as error:
        return _report_error(error)
    progress("done", 1.0)
    _print_json(manifest)
    return 0


def cmd_train(args: argparse.Namespace, settings: VelocastSettings | None = None) -> int:
    from velocast.data.normalize import read_source
    from velocast.ml.training import TrainingRequest, run_training

    settings = settings or get_settings()
    try:
        hyperparams = json.loads(args.hyperparams) if args.hyperparams else {}
    except json.JSONDecodeError as error:
        return _report_error(ValueError(f"--hyperparams is not valid JSON: {error}"))
    # Only what was given: the request's defaults are the single source of the others.
    given = {
        name: value
        for name, value in (
            ("model_type", args.model_type),
            ("env", args.env),
            ("data_source", args.data_source),
            ("test_fraction", args.test_fraction),
        )
        if value is not None
    }
    if args.current_window is not None:
        given["current_window"] = dict(zip(("start", "end"), args.current_window, strict=True))
    try:
        request = TrainingRequest(hyperparams=hyperparams, test_mode=args.test_mode, **given)
        current = None if args.current is None else read_source(Path(args.current))
        result = run_training(request, settings, progress=StepProgress(), current_frame=current)
    except _user_errors(FileNotFoundError) as error:
        return _report_error(error)
    _print_json(result.to_dict())
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: VelocastSettings | None = None) -> int:
    from velocast.ml.evaluation import FrameInfo, evaluate
    from velocast.ml.models import load_model
    from velocast.ml.reference_data import load_test_baseline
    from velocast.ml.tracking import Tracker

    settings = settings or get_settings()
    progress = StepProgress(use_tqdm=False)
    try:
        tracker = Tracker(settings)
        model_uri = args.model_uri or tracker.model_uri_for_run(args.run_id)
        progress(f"loading {model_uri}", 0.0)
        # A local file written by VelocastModel.save is accepted too (no MLflow needed).
        path = Path(model_uri)
        model = load_model(path) if path.is_file() else tracker.load_model(model_uri)
        progress("loading test_baseline", 0.4)
        test = load_test_baseline(settings, args.data_source)
        progress(f"scoring on {len(test):,} rows", 0.6)
        metrics = evaluate(model, test)
    except _user_errors(ValueError) as error:
        return _report_error(error)
    progress("done", 1.0)
    _print_json(
        {
            "model_uri": model_uri,
            "model_type": model.model_type,
            "test_baseline": metrics.to_dict(),
            "frame": FrameInfo.of(test).to_dict(),
        }
    )
    return 0


def cmd_promote(args: argparse.Namespace, settings: VelocastSettings | None = None) -> int:
    from velocast.ml.tracking import champion_alias
    from velocast.ml.training import promote

    settings = settings or get_settings()
    try:
        result = promote(settings, args.env, args.model_type, args.run_id)
    except _user_errors() as error:
        return _report_error(error)
    _print_json(result.to_dict() | {"alias": champion_alias(args.env)})
    return 0


# --- wiring ------------------------------------------------------------------------------------


def add_ml_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``baseline``, ``train``, ``evaluate`` and ``promote`` (each sets ``handler``).

    Nothing heavy is imported here (scikit-learn, MLflow): ``velocast stack up`` stays quick.
    Model types and hyper-parameters are checked by ``TrainingRequest``, with precise messages.
    """
    data_source_help = "gs://bucket/prefix of the baseline (default gs://<bucket>/data)"

    baseline = subparsers.add_parser(
        "baseline", help="normalise a raw export and store train_baseline/test_baseline in the bucket"
    )
    baseline.add_argument("source", type=Path, help="CSV, JSON or parquet export (any known column variant)")
    split = baseline.add_mutually_exclusive_group()
    split.add_argument(
        "--split-at", help="first instant of test_baseline (ISO 8601; naive = Europe/Paris wall clock)"
    )
    split.add_argument(
        "--test-fraction",
        type=float,
        help="share of the rows (the latest) in test_baseline (default 0.2)",
    )
    baseline.add_argument("--location", help=data_source_help)
    baseline.set_defaults(handler=cmd_baseline)

    train = subparsers.add_parser(
        "train", help="train a challenger, evaluate it against the champion, log it"
    )
    train.add_argument("--model-type", help="hgb (default) or rf")
    train.add_argument("--hyperparams", help="JSON object, e.g. '{\"max_iter\": 200}'")
    train.add_argument("--env", help="dev (default) or prod")
    train.add_argument(
        "--test-mode", action="store_true", help="smoke run on a sample; never a prod champion"
    )
    current = train.add_mutually_exclusive_group()
    current.add_argument(
        "--current", type=Path, help="recent actuals (raw or normalised file) for the sliding window"
    )
    current.add_argument(
        "--current-window",
        nargs=2,
        metavar=("START", "END"),
        help="recent actuals from the raw BigQuery table, [START, END) as ISO 8601 with an offset",
    )
    train.add_argument(
        "--test-fraction", type=float, help="share of the current window in test_current (0.2)"
    )
    train.add_argument("--data-source", help=data_source_help)
    train.set_defaults(handler=cmd_train)

    evaluate = subparsers.add_parser("evaluate", help="score a model on test_baseline")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="the training run that registered the model")
    which.add_argument("--model-uri", help="models:/<name>/<version>, models:/<name>@<alias> or a local file")
    evaluate.add_argument("--data-source", help=data_source_help)
    evaluate.set_defaults(handler=cmd_evaluate)

    promote = subparsers.add_parser("promote", help="make a registered run the champion of its model type")
    promote.add_argument("--model-type", required=True, help="hgb or rf")
    promote.add_argument("--run-id", required=True)
    promote.add_argument("--env", default="dev", type=str.lower, choices=["dev", "prod"])
    promote.set_defaults(handler=cmd_promote)


__all__ = ["StepProgress", "add_ml_commands", "cmd_baseline", "cmd_evaluate", "cmd_promote", "cmd_train"]
