"""``velocast baseline | train | evaluate | promote``: the model lifecycle from a terminal.

Each command prints its result as JSON on stdout (pipe it to ``jq``) and its progress on stderr: a
tqdm bar on a terminal, otherwise one line per step with the elapsed seconds. Errors are not
caught here: ``velocast.cli.main`` maps them by family (bad hyper-parameters, an unknown run,
unusable data... print ``{"error": ...}`` and exit with status 2). What the domain raises outside
the families (a missing input file, ``parse_model_uri``'s ``ValueError``, ``model_uri_for_run``'s
``LookupError``, ``evaluate``'s ``ValueError`` on unusable rows) is converted at the call.

The same functions as the serving sidecar's routes run underneath (``velocast.ml.training``); no
Airflow import, and nothing heavy (scikit-learn, MLflow) until a command runs.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from velocast.cli.output import StepProgress, print_json
from velocast.errors import NotFoundError, RequestError, VelocastError
from velocast.settings import VelocastSettings


@contextmanager
def _missing_file_is_a_request_error() -> Iterator[None]:
    """A file named on the command line that does not exist: the request is wrong (exit 2)."""
    try:
        yield
    except FileNotFoundError as error:
        raise NotFoundError(f"no such file: {error.filename or error}") from error


# --- the commands ------------------------------------------------------------------------------


def cmd_baseline(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.ml.reference_data import BaselineLocation, create_baseline

    progress = StepProgress(use_tqdm=False)
    progress(f"reading, normalizing and splitting {args.source}", 0.0)
    with _missing_file_is_a_request_error():
        manifest = create_baseline(
            Path(args.source),
            settings,
            split_at=args.split_at,
            test_fraction=args.test_fraction,
            location=None if args.location is None else BaselineLocation.parse(args.location),
        )
    progress("done", 1.0)
    print_json(manifest)
    return 0


def cmd_train(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.data.readers import read_source
    from velocast.ml.training import run_training
    from velocast.ml.training_request import TrainingRequest

    try:
        hyperparams = json.loads(args.hyperparams) if args.hyperparams else {}
    except json.JSONDecodeError as error:
        raise RequestError(f"--hyperparams is not valid JSON: {error}") from None
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
    request = TrainingRequest(hyperparams=hyperparams, test_mode=args.test_mode, **given)
    with _missing_file_is_a_request_error():
        current = None if args.current is None else read_source(Path(args.current))
    result = run_training(request, settings, progress=StepProgress(), current_frame=current)
    print_json(result.to_dict())
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.ml.evaluation import FrameInfo, evaluate
    from velocast.ml.model_base import load_model
    from velocast.ml.reference_data import load_test_baseline
    from velocast.ml.tracking import Tracker

    progress = StepProgress(use_tqdm=False)
    tracker = Tracker(settings)
    try:
        model_uri = args.model_uri or tracker.model_uri_for_run(args.run_id)
    except LookupError as error:  # the run registered no model version
        raise NotFoundError(str(error)) from error
    progress(f"loading {model_uri}", 0.0)
    # A local file written by VelocastModel.save is accepted too (no MLflow needed).
    path = Path(model_uri)
    try:
        model = load_model(path) if path.is_file() else tracker.load_model(model_uri)
        progress("loading test_baseline", 0.4)
        test = load_test_baseline(settings, args.data_source)
        progress(f"scoring on {len(test):,} rows", 0.6)
        metrics = evaluate(model, test)
    except (VelocastError, ValidationError):
        raise  # already a family (or a request model's error): main maps it
    except ValueError as error:  # a malformed model URI, or rows that cannot be scored
        raise RequestError(str(error)) from error
    progress("done", 1.0)
    print_json(
        {
            "model_uri": model_uri,
            "model_type": model.model_type,
            "test_baseline": metrics.to_dict(),
            "frame": FrameInfo.of(test).to_dict(),
        }
    )
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container's anonymous uid)
        return "unknown user"


def cmd_promote(args: argparse.Namespace, settings: VelocastSettings) -> int:
    """The same promotion as ``POST /promote_champion`` (``velocast.ml.promotion``): the registry,
    then the MLflow alias; MLflow unreachable → nothing written, exit 1."""
    from velocast.ml.promotion import promote_champion

    result = promote_champion(
        settings,
        args.env,
        args.model_type,
        args.run_id,
        override_rejection=args.override_rejection,
        reason=args.reason,
        by=args.by or _os_user(),
        via="cli",
    )
    print_json(result.to_dict())
    return 0


# --- wiring ------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``baseline``, ``train``, ``evaluate`` and ``promote`` (each sets ``handler``).

    Nothing heavy is imported here (scikit-learn, MLflow): ``velocast stack up`` stays quick.
    Model types and hyper-parameters are checked by ``TrainingRequest``, with precise messages.
    """
    data_source_help = "gs://bucket/prefix of the baseline (default gs://<bucket>/data)"

    baseline = subparsers.add_parser(
        "baseline", help="normalize a raw export and store train_baseline/test_baseline in the bucket"
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
        "--current", type=Path, help="recent actuals (raw or normalized file) for the sliding window"
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
    promote.add_argument(
        "--override-rejection",
        action="store_true",
        help="promote a model whose deployment decision was REJECT (needs --reason; recorded on the entry)",
    )
    promote.add_argument("--reason", help="why (required with --override-rejection; recorded on the entry)")
    promote.add_argument("--by", help="who promotes, recorded on the entry (default: the OS user)")
    promote.set_defaults(handler=cmd_promote)


__all__ = ["cmd_baseline", "cmd_evaluate", "cmd_promote", "cmd_train", "register"]
