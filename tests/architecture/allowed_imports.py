"""An import-linter contract type: the files of a folder import only what an allow-list names.

import-linter's built-in contracts forbid modules; the DAG files need the opposite rule (they may
import ``airflow.sdk``, ``velocast`` and the standard library at module level, and nothing else).
grimp cannot serve it: it squashes external packages to their top-level name (``airflow``, so
``airflow.sdk`` and ``airflow.models`` look alike), and the DAG folder is not a package a plain
``lint-imports`` run can import (Airflow puts it on ``sys.path`` itself). So this contract reads the
folder's files (``source_folders``, relative to the directory ``lint-imports`` runs in: the
repository root) and their module-level import statements from the syntax tree: an import inside
a function body runs only when the function does (a task body, at run time) and is not checked.
Registered in ``pyproject.toml`` (``contract_types``).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True)
class ImportStatement:
    line_number: int
    module: str  # dotted; a relative import keeps its leading dots
    line_contents: str


def module_level_imports(source: str) -> list[ImportStatement]:
    """The import statements of ``source`` outside function bodies, one entry per imported module."""
    lines = source.splitlines()
    found: list[ImportStatement] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # runs only when called
            if isinstance(child, ast.Import):
                modules = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                modules = ["." * child.level + (child.module or "")]
            else:
                visit(child)
                continue
            text = lines[child.lineno - 1].strip()
            found.extend(ImportStatement(child.lineno, module, text) for module in modules)

    visit(ast.parse(source))
    return found


def is_allowed(name: str, allowed: set[str], *, standard_library: bool) -> bool:
    if name.startswith("."):
        return False  # Airflow loads DAG files as top-level modules: no package to be relative to
    if standard_library and name.split(".", maxsplit=1)[0] in sys.stdlib_module_names:
        return True
    return any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)


class AllowedImportsContract(Contract):
    """The Python files under ``source_folders`` import only ``allowed_modules`` at module level.

    Options: ``source_folders`` (relative to where ``lint-imports`` runs), ``allowed_modules`` (dotted
    prefixes; external ones may be submodules such as ``airflow.sdk``), ``allow_standard_library``
    (default true).
    """

    type_name = "allowed_imports"

    source_folders = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())
    allow_standard_library = fields.BooleanField(required=False, default=True)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = set(self.allowed_modules)  # type: ignore[call-overload]
        files: list[Path] = []
        for folder in self.source_folders:  # type: ignore[attr-defined]
            path = Path(folder)
            if not path.is_dir():
                raise ValueError(
                    f"source folder {folder!r} does not exist (run lint-imports at the repo root)"
                )
            files.extend(sorted(path.rglob("*.py")))
        violations = [
            {
                "importer": str(file),
                "imported": statement.module,
                "line_number": statement.line_number,
                "line_contents": statement.line_contents,
            }
            for file in files
            for statement in module_level_imports(file.read_text(encoding="utf-8"))
            if not is_allowed(statement.module, allowed, standard_library=bool(self.allow_standard_library))
        ]
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
