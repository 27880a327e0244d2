"""The replay's command line: ``python -m velocast.local.replay --host … --port …``.

The local stack (``velocast.local.stack``) and ``docker-compose.yaml`` start the replay this way; the
defaults come from the project settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from velocast.local.replay.app import ReplayConfig, create_app
from velocast.local.replay.data import default_data_path


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve the replay with uvicorn until interrupted."""
    import uvicorn

    from velocast.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        description="Replay of the Paris Open Data Explore API v2.1 (bike counters)."
    )
    parser.add_argument("--host", default=settings.local_host)
    parser.add_argument("--port", type=int, default=settings.replay_port)
    parser.add_argument("--shift-weeks", type=int, default=settings.replay_shift_weeks)
    parser.add_argument("--data", type=Path, default=None, help="parquet file (default: the packaged one)")
    parser.add_argument("--serve-future", action="store_true", help="also serve hours after now")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = ReplayConfig(
        data_path=args.data or default_data_path(),
        shift_weeks=args.shift_weeks,
        serve_future=args.serve_future,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
