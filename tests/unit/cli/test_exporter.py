from __future__ import annotations

import json
from typing import Any

import pytest

from velocast.cli.main import main
from velocast.exporter import server


def test_a_window_under_one_day_is_a_request_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "serve_forever", lambda settings, **kwargs: calls.append(kwargs))
    assert main(["exporter", "--window-days", "0"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": "--window-days must be at least 1", "type": "RequestError"}
    assert captured.err == "error: --window-days must be at least 1\n"
    assert calls == []
