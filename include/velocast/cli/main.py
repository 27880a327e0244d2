"""``velocast`` command line: the local stack, the demo of the platform's main job, the model
lifecycle and the MLOps exporter.

Builds the parser from the command-group modules (each ``register``s its commands), loads the
settings, runs the chosen handler and maps what it raises to an exit status, by family: a request
error (``velocast.errors.RequestError`` or a pydantic ``ValidationError`` from a request model) exits
with 2, any other ``VelocastError`` with 1. Other exceptions are bugs: they keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from pydantic import ValidationError

from velocast.cli import backtest, demo, exporter, ml, stack
from velocast.cli.output import print_json
from velocast.errors import EXIT_REQUEST_ERROR, ConfigurationError, VelocastError, exit_code
from velocast.settings import VelocastSettings, get_settings

Handler = Callable[[argparse.Namespace, VelocastSettings], int]

# A string: argparse._SubParsersAction is generic for type checkers only.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Each group's ``register``, in the order ``velocast --help`` lists the commands.
COMMAND_GROUPS: tuple[Callable[[Subparsers], None], ...] = (
    stack.register,
    demo.register,
    ml.register,
    backtest.register,
    exporter.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="velocast",
        description="The local stack, the demo of the platform's main job, the model lifecycle and "
        "the MLOps exporter.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def report_error(error: VelocastError | ValidationError) -> int:
    """Print ``error`` as the JSON payload (stdout) and one line (stderr); return its exit status."""
    payload: dict[str, Any] = {"error": str(error), "type": type(error).__name__}
    if isinstance(error, ValidationError):
        payload["details"] = error.errors(include_url=False)
    print_json(payload)
    print(f"error: {error}", file=sys.stderr)
    # Bad arguments turned into a request model are the caller's mistake, like a RequestError.
    return EXIT_REQUEST_ERROR if isinstance(error, ValidationError) else exit_code(error)


def run_handler(handler: Handler, args: argparse.Namespace, settings: VelocastSettings) -> int:
    """Run one command; the one place where its errors become exit statuses."""
    try:
        return handler(args, settings)
    except (VelocastError, ValidationError) as error:
        return report_error(error)


def _load_settings() -> VelocastSettings:
    try:
        return get_settings()
    except ValidationError as error:  # the environment is wrong, not the command line
        raise ConfigurationError(f"the settings cannot be read from the environment: {error}") from error


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # health probes are not news
    args = build_parser().parse_args(argv)
    try:
        settings = _load_settings()
    except ConfigurationError as error:
        return report_error(error)
    handler: Handler = args.handler
    return run_handler(handler, args, settings)


if __name__ == "__main__":
    sys.exit(main())
