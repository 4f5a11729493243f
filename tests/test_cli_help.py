"""Every subcommand and every flag of the ``leanse`` command says what it is for."""

from __future__ import annotations

import argparse

import pytest

from leanse.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    """``(command path, parser)`` for the command and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(build_parser(), ("leanse",)))


def test_the_tree_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"leanse enhance", "leanse profile", "leanse data demo", "leanse data real", "leanse models"} <= names


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_every_flag_and_subcommand_has_help(path, parser):
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            missing += [f"subcommand {name}" for name in action.choices if name not in helped]
        elif not (action.help or "").strip():
            missing.append("/".join(action.option_strings) or action.dest)
    assert not missing, f"{' '.join(path)}: no help text for {', '.join(missing)}"
    assert parser.format_help()  # every help text formats (no stray % in it)
