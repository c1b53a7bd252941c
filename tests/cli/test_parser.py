"""Mistakes in the command line itself: one line naming the help of the command it was made in,
with the closest option or command suggested; and the help, by ``rxstore`` and ``python -m rxstore``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.commands import assert_one_line_error, rxstore


def test_a_mistyped_option_names_the_subcommands_help_and_suggests_the_closest_option(tmp_path: Path) -> None:
    line = assert_one_line_error(
        rxstore("serve", "--prot", "8080", cwd=tmp_path),
        "rxstore serve: error: unrecognized arguments: --prot 8080",
        "did you mean --port?",
        "(see: rxstore serve --help)",
    )
    assert "see: rxstore --help" not in line
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing created


@pytest.mark.parametrize(
    ("args", "command", "closest"),
    [
        (["log", "show", "--dbb", "app.db"], "rxstore log show", "--db"),
        (["token", "--sub", "ann", "--tll", "60"], "rxstore token", "--ttl"),
        (["demo", "--duratoin", "1"], "rxstore demo", "--duration"),
        (["serve", "--tables", "posts", "--max-subscritions=4"], "rxstore serve", "--max-subscriptions"),
    ],
)
def test_every_subcommand_suggests_its_own_closest_option(
    tmp_path: Path, args: list[str], command: str, closest: str
) -> None:
    assert_one_line_error(
        rxstore(*args, cwd=tmp_path),
        f"{command}: error:",
        f"did you mean {closest}?",
        f"(see: {command} --help)",
    )


def test_an_option_close_to_none_gets_no_suggestion(tmp_path: Path) -> None:
    line = assert_one_line_error(
        rxstore("serve", "--xyzzy", cwd=tmp_path), "--xyzzy", "(see: rxstore serve --help)"
    )
    assert "did you mean" not in line


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["sevre"],
            ["rxstore: error: unknown command 'sevre'; did you mean serve?", "(see: rxstore --help)"],
        ),
        (["--debug", "tokn"], ["unknown command 'tokn'; did you mean token?"]),
        (
            ["log", "shwo"],
            ["rxstore log: error: unknown command 'shwo'; did you mean show?", "(see: rxstore log --help)"],
        ),
        (["xyzzy"], ["unknown command 'xyzzy': use one of serve, token, demo, log"]),
    ],
)
def test_a_mistyped_command_suggests_the_closest_one(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(rxstore(*args, cwd=tmp_path), *fragments)


@pytest.mark.parametrize("module", ["rxstore", "rxstore.cli"])
def test_python_dash_m_help_lists_every_command_with_what_it_does(module: str) -> None:
    """``python -m rxstore --help`` (and ``-m rxstore.cli``): serve, token, demo and log, each described."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    listed = {
        line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ") and line.split()
    }
    assert {"serve", "token", "demo", "log"} <= listed, done.stdout
    assert "inspect the change log" in done.stdout


def test_the_log_help_lists_its_actions() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rxstore", "log", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "show" in done.stdout and "mark-restore" in done.stdout
