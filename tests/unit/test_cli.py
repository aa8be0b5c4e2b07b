"""The `headwater` dispatcher: each command loads its own area only, and all are listed."""

from __future__ import annotations

import argparse

import pytest

from controllers import cli


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_every_command_is_listed_in_help_in_the_areas_order() -> None:
    assert _commands(cli.build_parser()) == [c for area in cli.AREAS for c in area.commands]


@pytest.mark.parametrize("area", cli.AREAS, ids=lambda area: area.module)
def test_a_command_builds_exactly_its_area(area: cli.Area) -> None:
    for command in area.commands:
        assert _commands(cli.build_parser(command)) == list(area.commands)


def test_the_command_word_is_the_first_argument_unless_an_option() -> None:
    assert cli.command_word(["run", "kustomize", "--concurrent=4"]) == "run"
    assert cli.command_word(["--help"]) is None
    assert cli.command_word([]) is None
    # An unknown word builds every area, so argparse's error lists all choices.
    assert _commands(cli.build_parser(cli.command_word(["nosuch"]))) == _commands(
        cli.build_parser()
    )


def test_an_unknown_command_is_refused_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nosuch"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and "dashboard" in err and "run" in err
