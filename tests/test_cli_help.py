"""`rewards --help` lists every command with a one-line help (the operator's map)."""

from __future__ import annotations

import argparse

import pytest

from streams.cli.main import parser

OPERATOR_COMMANDS = {
    "worker", "config", "topics", "publish", "demo", "dead-letters", "status", "decide",
    "adjust", "forget", "review", "ledger", "report", "bench", "chaos", "sandbox-provider",
}  # fmt: skip
NESTED = {"review": {"list", "show"}, "ledger": {"verify"}, "dead-letters": {"replay"}}


def _commands(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c for c in sub._choices_actions}


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_help_lists_every_command_with_one_line_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    helps = _commands(parser())
    assert set(helps) >= OPERATOR_COMMANDS
    for name in OPERATOR_COMMANDS:
        text = helps[name].help or ""
        assert text.strip(), f"{name} has no help"
        assert "\n" not in text.strip(), f"{name}'s help is not one line"
        assert name in shown


@pytest.mark.parametrize(("command", "children"), sorted(NESTED.items()))
def test_nested_commands_have_one_line_help(command, children):
    nested = _subparsers(_subparsers(parser())[command])
    assert set(nested) >= children
    helps = _commands(_subparsers(parser())[command])
    for child in children:
        assert (helps[child].help or "").strip(), f"{command} {child} has no help"
