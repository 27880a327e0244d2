from __future__ import annotations

import io
import json
import re
from datetime import date

import pytest

from velocast.cli.output import StepProgress, print_json


def test_print_json_writes_dates_as_text_and_refuses_nan(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"day": date(2024, 1, 2), "rows": 3})
    assert json.loads(capsys.readouterr().out) == {"day": "2024-01-02", "rows": 3}
    with pytest.raises(ValueError):
        print_json({"r2": float("nan")})


def test_progress_off_a_terminal_is_one_line_per_step() -> None:
    stream = io.StringIO()
    progress = StepProgress(stream)
    progress("loading", 0.0)
    progress("done", 1.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[\s*\d+\.\ds\]\s+0% loading", lines[0])
    assert re.fullmatch(r"\[\s*\d+\.\ds\] 100% done", lines[1])
