"""``velocast backtest``: forecast every day of a past window as DAG 2 would have, and score it.

Fits once on the rows before ``--train-until`` (the same ``fit`` as ``velocast train``), forecasts
each local day of [``--from``, ``--to``) at every horizon from the counts older than the day minus
the publication lag (``velocast.ml.backtest``), and writes ``predictions.parquet`` and
``metrics.json`` to ``--out``; the metrics are printed as JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from velocast.cli.output import StepProgress, print_json
from velocast.errors import NotFoundError, RequestError
from velocast.settings import VelocastSettings


def cmd_backtest(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.data.normalize import normalize
    from velocast.data.readers import read_source
    from velocast.ml.backtest import BacktestWindow, backtest_hyperparams, run_backtest
    from velocast.ml.models import validate_hyperparams

    try:
        hyperparams = json.loads(args.hyperparams) if args.hyperparams else {}
    except json.JSONDecodeError as error:
        raise RequestError(f"--hyperparams is not valid JSON: {error}") from None
    if not isinstance(hyperparams, dict):
        raise RequestError("--hyperparams must be a JSON object")
    window = BacktestWindow.of(
        args.train_until, args.start, args.end, lag_days=args.lag_days, horizon_days=args.horizon_days
    )
    # Checked before the (long) read: a typo in a knob fails at once.
    validate_hyperparams(args.model_type, backtest_hyperparams(args.model_type, hyperparams, window))
    progress = StepProgress()
    progress(f"reading and normalizing {args.data}", 0.0)
    if not args.data.is_file():
        raise NotFoundError(f"no such file: {args.data}")
    normalized = normalize(read_source(args.data))
    result = run_backtest(
        normalized.frame, window, model_type=args.model_type, hyperparams=hyperparams, progress=progress
    )
    metrics = {**result.metrics, "data": str(args.data), "rejected_rows": len(normalized.rejected)}
    args.out.mkdir(parents=True, exist_ok=True)
    result.predictions.to_parquet(args.out / "predictions.parquet", index=False)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    print_json(metrics)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backtest`` (sets ``handler``); nothing heavy is imported until it runs."""
    parser = subparsers.add_parser(
        "backtest", help="rolling-origin backtest: forecast each day of a past window and score it"
    )
    parser.add_argument("--data", type=Path, required=True, help="counts: parquet, CSV or API JSON lines")
    parser.add_argument("--train-until", required=True, help="local date: train on the rows before it")
    parser.add_argument("--from", dest="start", required=True, help="first local date forecast")
    parser.add_argument("--to", dest="end", required=True, help="first local date not forecast")
    parser.add_argument("--horizon-days", type=int, default=2, help="forecast horizons 1…H days (default 2)")
    parser.add_argument("--lag-days", type=int, default=2, help="publication lag in days (default 2)")
    parser.add_argument("--model-type", default="hgb", help="hgb (default) or rf")
    parser.add_argument("--hyperparams", help="JSON object, e.g. '{\"history\": false}'")
    parser.add_argument(
        "--out", type=Path, default=Path("backtest"), help="output directory (default ./backtest)"
    )
    parser.set_defaults(handler=cmd_backtest)


__all__ = ["cmd_backtest", "register"]
