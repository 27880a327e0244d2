"""``velocast stack …``, ``velocast airflow …``, ``velocast serving …``: the local stack and what runs on it.

``stack up | down | status | env [--airflow]`` drives the emulators, the API replay and MLflow;
``airflow up | down | status`` drives Airflow's api-server, scheduler and dag-processor;
``serving up | down | status`` drives the serving sidecar with a real champion. ``status`` (and
``up``) exit with 1 when a service is down. The process groups are imported only when a command
runs: building the parser stays cheap.

The sidecar is a group of its own rather than part of ``stack up``: it needs a champion, and
bootstrapping one trains a model (seconds of CPU and a registry write), which the emulators that
every test and DAG 1 need should not wait for. Like ``airflow up``, ``serving up`` starts the stack
first. ``stack down`` stops the sidecar too: it cannot work without the stack.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING

from velocast.settings import VelocastSettings

if TYPE_CHECKING:
    from velocast.local.serving import ServingSidecar
    from velocast.local.stack import ProcessGroup


def _stack_groups(settings: VelocastSettings) -> list[ProcessGroup]:
    """The groups ``velocast stack`` drives, in start order (stopped in reverse)."""
    from velocast.local.mlflow_server import MlflowServer
    from velocast.local.stack import LocalStack

    return [LocalStack(settings), MlflowServer(settings)]


def _print_status(status: Mapping[str, bool], width: int) -> int:
    """One ``name healthy|down`` line per service; the exit status is 1 unless all are healthy."""
    for name, healthy in status.items():
        print(f"{name:{width}s} {'healthy' if healthy else 'down'}")
    return 0 if all(status.values()) else 1


def _stack_status(groups: list[ProcessGroup]) -> int:
    return _print_status({name: ok for group in groups for name, ok in group.status().items()}, width=9)


# --- velocast stack ----------------------------------------------------------------------------


def cmd_stack_up(args: argparse.Namespace, settings: VelocastSettings) -> int:
    groups = _stack_groups(settings)
    started = [name for group in groups for name in group.up()]
    print(f"stack up (started: {', '.join(started) or 'none, all were running'})")
    return _stack_status(groups)


def cmd_stack_down(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.serving import ServingSidecar

    groups = [*_stack_groups(settings), ServingSidecar(settings)]
    stopped = [name for group in reversed(groups) for name in group.down()]
    print(f"stopped: {', '.join(stopped) or 'nothing'}")
    return 0


def cmd_stack_status(args: argparse.Namespace, settings: VelocastSettings) -> int:
    return _stack_status(_stack_groups(settings))


def cmd_stack_env(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.airflow_env import airflow_environment
    from velocast.local.stack import LocalStack

    env = airflow_environment(settings) if args.airflow else LocalStack(settings).env()
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


# --- velocast airflow --------------------------------------------------------------------------


def cmd_airflow_up(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.airflow_env import AirflowServices
    from velocast.local.stack import LocalStack

    LocalStack(settings).up()
    started = AirflowServices(settings).up()
    print(f"airflow up (started: {', '.join(started) or 'none, all were running'})")
    print(f"  UI and REST API: http://{settings.local_host}:{settings.airflow_api_port}")
    return 0


def cmd_airflow_down(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.airflow_env import AirflowServices

    print(f"stopped: {', '.join(AirflowServices(settings).down()) or 'nothing'}")
    return 0


def cmd_airflow_status(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.airflow_env import AirflowServices

    return _print_status(AirflowServices(settings).status(), width=22)


# --- velocast serving --------------------------------------------------------------------------


def cmd_serving_up(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.champion import bootstrap_champion
    from velocast.local.serving import ServingSidecar
    from velocast.local.stack import LocalStack

    LocalStack(settings).up()
    if not args.no_champion:
        weeks = {} if args.weeks is None else {"weeks": args.weeks}
        champion = bootstrap_champion(settings, **weeks)
        how = f"trained in {champion.seconds:.1f} s" if champion.created else "already registered"
        entry = champion.entry
        print(f"{settings.serving_env} champion: {entry.model_type} run {entry.run_id} ({how})")
    sidecar = ServingSidecar(settings)
    started = sidecar.up()
    print(f"serving up (started: {', '.join(started) or 'none, it was running'})")
    print(f"  {sidecar.url} (API key: the password of Airflow's {settings.sidecar_conn_id} connection)")
    if not args.no_champion:
        sidecar.wait_ready()
    return _serving_status(sidecar)


def cmd_serving_down(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.serving import ServingSidecar

    print(f"stopped: {', '.join(ServingSidecar(settings).down()) or 'nothing'}")
    return 0


def cmd_serving_status(args: argparse.Namespace, settings: VelocastSettings) -> int:
    from velocast.local.serving import ServingSidecar

    return _serving_status(ServingSidecar(settings))


def _serving_status(sidecar: ServingSidecar) -> int:
    """The process line, then what ``/ready`` says (a running sidecar without a champion exits 0)."""
    code = _print_status(sidecar.status(), width=9)
    answer = sidecar.readiness()
    if answer is not None:
        body = answer.json()
        served = ", ".join(f"{kind} run {run_id}" for kind, run_id in body.get("champions", {}).items())
        print(f"{'champion':9s} {served or 'none: ' + str(body.get('reason'))}")
    return code


# --- wiring ------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stack``, ``airflow`` and ``serving``, one sub-command per action (each sets ``handler``)."""
    stack = subparsers.add_parser(
        "stack", help="start, stop or inspect the local GCP-compatible stack (emulators, API replay, MLflow)"
    )
    stack_actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    stack_actions.add_parser("up", help="start what is not running, then print the status").set_defaults(
        handler=cmd_stack_up
    )
    stack_actions.add_parser("down", help="stop the stack").set_defaults(handler=cmd_stack_down)
    stack_actions.add_parser("status", help="one line per service; exit 1 if one is down").set_defaults(
        handler=cmd_stack_status
    )
    env = stack_actions.add_parser("env", help="print `export …` lines for the stack's clients")
    env.add_argument("--airflow", action="store_true", help="include the local Airflow settings")
    env.set_defaults(handler=cmd_stack_env)

    airflow = subparsers.add_parser(
        "airflow", help="run Airflow (api-server :8081, scheduler, dag-processor) on the local stack"
    )
    airflow_actions = airflow.add_subparsers(dest="action", required=True, metavar="ACTION")
    airflow_actions.add_parser("up", help="start the local stack, then Airflow").set_defaults(
        handler=cmd_airflow_up
    )
    airflow_actions.add_parser("down", help="stop Airflow (the stack keeps running)").set_defaults(
        handler=cmd_airflow_down
    )
    airflow_actions.add_parser("status", help="one line per component; exit 1 if one is down").set_defaults(
        handler=cmd_airflow_status
    )

    serving = subparsers.add_parser(
        "serving", help="run the serving sidecar (uvicorn) on the local stack, with a real champion"
    )
    serving_actions = serving.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = serving_actions.add_parser(
        "up",
        help="start the stack, register a champion trained on the shipped data if none, start the sidecar",
    )
    up.add_argument("--no-champion", action="store_true", help="start the sidecar without bootstrapping one")
    up.add_argument(
        "--weeks", type=int, help="weeks of the shipped counts to train on, the last held out (default 4)"
    )
    up.set_defaults(handler=cmd_serving_up)
    serving_actions.add_parser("down", help="stop the sidecar (the stack keeps running)").set_defaults(
        handler=cmd_serving_down
    )
    serving_actions.add_parser("status", help="the process and its champion; exit 1 if down").set_defaults(
        handler=cmd_serving_status
    )


__all__ = [
    "cmd_airflow_down",
    "cmd_airflow_status",
    "cmd_airflow_up",
    "cmd_serving_down",
    "cmd_serving_status",
    "cmd_serving_up",
    "cmd_stack_down",
    "cmd_stack_env",
    "cmd_stack_status",
    "cmd_stack_up",
    "register",
]
