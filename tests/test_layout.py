"""The tree's layers: tools -> worker -> adapters -> processors/schemas, imports going one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

SHARED = {"streams.settings", "streams.settings_models"}
"""Read by every layer of streams/: the one settings object (and its value types), validated
before anything starts."""
TOOLS = ("cli", "chaos", "bench")
"""The tools layer's packages, one per audience: operators, the chaos soak, the benchmarks."""


def layer(module: str) -> str:
    """Which layer a first-party module belongs to."""
    top, _, rest = module.partition(".")
    if top in ("processors", "schemas"):
        return "domain"
    if top == "tests":
        return "tests"
    if rest.partition(".")[0] in TOOLS:
        return "tools"
    if rest.startswith("adapters"):
        return "adapters"
    return "worker"


ALLOWED = {
    "domain": {"domain"},
    "adapters": {"domain", "adapters"},
    "worker": {"domain", "adapters", "worker"},
    "tools": {"domain", "adapters", "worker", "tools"},
}


def modules() -> list[tuple[str, Path]]:
    """Every first-party module of the layered packages."""
    out = []
    for package in ("processors", "schemas", "streams"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out.append((".".join(p for p in parts if p != "__init__"), path))
    return out


def imported(path: Path) -> set[str]:
    """First-party modules a file imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("processors", "schemas", "streams")}


def known(name: str, names: set[str]) -> str | None:
    """The module `name` refers to (a `from package import name` may name a module)."""
    while name and name not in names:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize(("module", "path"), modules(), ids=str)
def test_imports_go_one_way(module: str, path: Path) -> None:
    names = {m for m, _ in modules()}
    wrong = []
    for target in imported(path):
        resolved = known(target, names)
        if resolved is None or resolved in SHARED or resolved in ("streams", module):
            continue
        if layer(resolved) not in ALLOWED[layer(module)]:
            wrong.append(f"{module} ({layer(module)}) imports {resolved} ({layer(resolved)})")
    assert not wrong, "\n".join(wrong)


def test_the_layers_are_where_the_tree_says() -> None:
    streams = REPO / "streams"
    assert (streams / "adapters").is_dir() and all((streams / t).is_dir() for t in TOOLS)
    assert {layer(m) for m, _ in modules()} == {"domain", "adapters", "worker", "tools"}


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from streams.cli.main import main\nimport streams.pipeline\n")
    assert imported(sneaky) == {"streams.cli.main", "streams.cli.main.main", "streams.pipeline"}
    assert layer("streams.pipeline") not in ALLOWED["adapters"]
    assert layer("streams.cli.main") not in ALLOWED["worker"]
