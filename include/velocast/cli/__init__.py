"""``velocast …``: the command line, one module per command group.

``main`` builds the parser from the groups, runs the chosen handler and maps its errors to an exit
status; ``stack`` (``stack``, ``airflow``, ``serving``), ``demo``, ``ml`` (``baseline``, ``train``,
``evaluate``, ``promote``) and ``exporter`` are the groups; ``output`` writes JSON results and progress.

Naming rule, the same in every group module:

- the module exposes ``register(subparsers)``, which adds its commands and sets each one's
  ``handler`` (``parser.set_defaults(handler=…)``);
- a handler is ``cmd_<command>`` for a command without actions (``cmd_train``, ``cmd_demo``) and
  ``cmd_<group>_<action>`` for an action of a group (``cmd_stack_up``, ``cmd_airflow_status``);
- every handler is ``(args: argparse.Namespace, settings: VelocastSettings) -> int`` (the exit
  status) and catches no error family: it raises ``velocast.errors.VelocastError`` (or lets a
  request model's pydantic ``ValidationError`` through), converting at the call only what the code
  it calls raises outside the families (a missing input file → ``NotFoundError``).

``main.run_handler`` alone turns errors into exit statuses (``velocast.errors.exit_code``: 2 for a
request error, 1 otherwise), printing ``{"error", "type", "details"?}`` on stdout and
``error: …`` on stderr.
"""
