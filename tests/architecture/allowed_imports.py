"""An import-linter contract type: the source modules import only what an allow-list names.

import-linter's built-in contracts forbid modules; the DAG files need the opposite rule (they may
import ``airflow.sdk``, ``velocast`` and the standard library at module level, and nothing else), and
grimp squashes external packages to their top-level name (``airflow``), which cannot tell
``airflow.sdk`` from ``airflow.models``. This contract reads grimp's import details instead (the
imported module as written on the line, and its line number) and, for "at module level", the
module's syntax tree: an import inside a function body runs only when the function does (a task
body, at run time), so it is not checked. grimp's own ``is_lazy`` flag is about PEP 810 ``lazy
import`` statements, not function-level imports. Registered in ``pyproject.toml`` (``contract_types``).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output

_IMPORTED = re.compile(r"^\s*(?:from\s+(?P<from>[\w.]+)\s+import\b|import\s+(?P<imports>.+))")


def imported_names(line_contents: str) -> list[str]:
    """The dotted module names an import line names (``import a.b, c as d`` → ``["a.b", "c"]``)."""
    match = _IMPORTED.match(line_contents.split("#", 1)[0])
    if match is None:
        return []
    if match.group("from"):
        return [match.group("from")]
    return [part.split(" as ")[0].strip() for part in match.group("imports").split(",")]


def function_level_lines(source: str) -> set[int]:
    """Line numbers of the import statements inside function bodies (run only when called)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    return Path(spec.origin).read_text(encoding="utf-8")


def is_allowed(name: str, allowed: set[str], *, standard_library: bool) -> bool:
    if standard_library and name.split(".", maxsplit=1)[0] in sys.stdlib_module_names:
        return True
    return any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)


class AllowedImportsContract(Contract):
    """The source modules (and their descendants) import only ``allowed_modules``.

    Options: ``source_modules`` (packages or modules), ``allowed_modules`` (dotted prefixes; external
    ones may be submodules such as ``airflow.sdk``), ``allow_standard_library`` (default true),
    ``module_level_only`` (default true: imports inside functions are not checked).
    """

    type_name = "allowed_imports"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())
    allow_standard_library = fields.BooleanField(required=False, default=True)
    module_level_only = fields.BooleanField(required=False, default=True)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        sources: list[str] = list(self.source_modules)  # type: ignore[call-overload]
        allowed = set(self.allowed_modules)  # type: ignore[call-overload]
        importers = set()
        for source in sources:
            if source not in graph.modules:
                raise ValueError(f"source module {source!r} is not in the import graph")
            importers |= {source} | graph.find_descendants(source)
        violations = []
        for importer in sorted(importers):
            skipped = function_level_lines(_module_source(importer)) if self.module_level_only else set()
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    if detail["line_number"] in skipped:
                        continue
                    # A relative import resolves through grimp's own module name.
                    names = [
                        imported if name.startswith(".") else name
                        for name in imported_names(str(detail["line_contents"])) or [imported]
                    ]
                    for name in names:
                        if not is_allowed(name, allowed, standard_library=bool(self.allow_standard_library)):
                            violations.append(
                                {
                                    "importer": importer,
                                    "imported": name,
                                    "line_number": detail["line_number"],
                                    "line_contents": detail["line_contents"],
                                }
                            )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(sorted(self.allowed_modules))  # type: ignore[call-overload]
        for violation in check.metadata["violations"]:
            output.print_error(
                f"{violation['importer']} is not allowed to import {violation['imported']} "
                f"(l.{violation['line_number']}: {violation['line_contents']}); allowed: {allowed}"
                + (" and the standard library" if self.allow_standard_library else ""),
                bold=False,
            )
            output.new_line()
