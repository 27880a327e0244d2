"""The evaluation plots logged with every training run (PNG files).

``predicted_vs_actual.png``: one panel per test frame (``test_baseline``, ``test_current``), one
colour per model (the challenger and, if any, the champion). ``error_by_hour.png``: the mean
absolute error by local hour of day, where in the day a model misses.

matplotlib's object API (``Figure``, the Agg canvas) and no pyplot: no global figure state and no
GUI backend. Shared with the serving sidecar; never Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from velocast.contract import PARIS_TZ
from velocast.ml.model_base import TARGET, VelocastModel

# Enough points to see the shape of a scatter; more only slows the PNG down.
MAX_SCATTER_POINTS: Final = 5_000


def _sample(n: int, limit: int = MAX_SCATTER_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    # Fixed seed: two runs on the same data draw the same points, so their plots compare.
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def _predictions(model: VelocastModel, frame: pd.DataFrame) -> np.ndarray:
    return model.predict(frame.drop(columns=[TARGET]))


def _color(model_name: str) -> str:
    # One colour per model across both plots (line styles tell the frames apart).
    return {"challenger": "C0", "champion": "C1"}.get(model_name, "C2")


def plot_predicted_vs_actual(
    frames: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping[str, np.ndarray]]
) -> Figure:
    """One panel per test frame; one colour per model (``predictions[model][frame]``)."""
    figure = Figure(figsize=(5.5 * len(frames), 5), layout="constrained")
    axes = figure.subplots(1, len(frames), squeeze=False)[0]
    for ax, (frame_name, frame) in zip(axes, frames.items(), strict=True):
        actual = frame[TARGET].to_numpy(dtype=np.float64)
        rows = _sample(len(actual))
        top = float(actual.max()) if actual.size else 1.0
        for model_name, by_frame in predictions.items():
            predicted = by_frame[frame_name]
            top = max(top, float(predicted.max()) if predicted.size else 0.0)
            ax.scatter(
                actual[rows], predicted[rows], s=4, alpha=0.3, label=model_name, color=_color(model_name)
            )
        ax.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
        ax.set(title=f"{frame_name} ({len(actual):,} rows)", xlabel="actual count", ylabel="predicted count")
        ax.legend(loc="upper left")
    return figure


def plot_error_by_hour(
    frames: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping[str, np.ndarray]]
) -> Figure:
    """Mean absolute error by local (Europe/Paris) hour of day: where in the day a model misses."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    ax = figure.subplots()
    styles = ("-", "--", ":", "-.")
    for position, (frame_name, frame) in enumerate(frames.items()):
        style = styles[position % len(styles)]
        hours = pd.to_datetime(frame["counted_at"], utc=True).dt.tz_convert(PARIS_TZ).dt.hour.to_numpy()
        actual = frame[TARGET].to_numpy(dtype=np.float64)
        for model_name, by_frame in predictions.items():
            errors = pd.Series(np.abs(by_frame[frame_name] - actual)).groupby(hours).mean()
            ax.plot(
                errors.index,
                errors.to_numpy(),
                linestyle=style,
                marker="o",
                color=_color(model_name),
                label=f"{model_name} · {frame_name}",
            )
    ax.set(xlabel="hour of day (Europe/Paris)", ylabel="mean absolute error (count)", xticks=range(24))
    ax.set_title("Error by hour of day")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def write_evaluation_plots(
    model: VelocastModel,
    champion: VelocastModel | None,
    frames: Mapping[str, pd.DataFrame],
    workdir: Path,
) -> list[Path]:
    """Both plots of ``model`` (and ``champion``) on ``frames``, written to ``workdir``; their paths."""
    models = {"challenger": model} | ({"champion": champion} if champion is not None else {})
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for role, each in models.items():
        # Without current data test_current *is* test_baseline: predict it once.
        by_id: dict[int, np.ndarray] = {}
        for frame in frames.values():
            if id(frame) not in by_id:
                by_id[id(frame)] = _predictions(each, frame)
        predictions[role] = {frame_name: by_id[id(frame)] for frame_name, frame in frames.items()}
    paths = []
    for file_name, figure in (
        ("predicted_vs_actual.png", plot_predicted_vs_actual(frames, predictions)),
        ("error_by_hour.png", plot_error_by_hour(frames, predictions)),
    ):
        path = workdir / file_name
        figure.savefig(path, dpi=90)
        paths.append(path)
    return paths


__all__ = ["plot_error_by_hour", "plot_predicted_vs_actual", "write_evaluation_plots"]
