"""The ``inspect`` and ``top`` commands: their help, their options' checks, and Textual missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rxstore.cli import main
from rxstore.cli._parser import TOKEN_ENV, build_parser
from rxstore.devtools.limits import FRAMES, INSPECT_INTERVAL, ROWS, TIMEOUT, TOP_INTERVAL
from rxstore.devtools.table_spec import TableSpec

WITHOUT_TEXTUAL = (
    "import sys; sys.modules['textual'] = None; from rxstore.cli import main; "
    "raise SystemExit(main(sys.argv[1:]))"
)
"""Runs the command line as if Textual were not installed (``import textual`` raises ImportError)."""


def test_inspect_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["inspect", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for words in (
        "URL",
        "--token",
        TOKEN_ENV,
        "--table NAME[=WHERE]",
        "--key",
        "--frames",
        "--rows",
        "--interval",
    ):
        assert words in out
    assert "last frames" in out and f"(default: {FRAMES})" in out


def test_top_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["top", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "URL [URL ...]" in out and "--interval" in out and "--timeout" in out and "down" in out


def test_the_options_default_to_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t0")  # the token from the environment: --token may be left out
    args = build_parser().parse_args(["inspect", "http://gw", "--table", "posts", "--key", "posts=slug"])
    assert (args.token, args.table, args.key) == ("t0", [TableSpec("posts")], [("posts", "slug")])
    assert (args.frames, args.rows, args.interval) == (FRAMES, ROWS, INSPECT_INTERVAL)
    args = build_parser().parse_args(["top", "http://a", "http://b"])
    assert (args.urls, args.interval, args.timeout) == (["http://a", "http://b"], TOP_INTERVAL, TIMEOUT)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["inspect", "http://gw", "--table", "posts"], "the following arguments are required: --token"),
        (["inspect", "http://gw", "--token", "t"], "the following arguments are required: --table"),
        (["inspect", "http://gw", "--token", "t", "--table", "posts={x"], "WHERE is not JSON"),
        (["inspect", "http://gw", "--token", "t", "--table", "posts", "--rows", "0"], "--rows"),
        (["top"], "the following arguments are required: URL"),
        (["top", "http://a", "--timeout", "0"], "'0' is not a positive number of seconds"),
        (["top", "http://a", "10.0.0.1:8080"], "'10.0.0.1:8080' is not an http(s) URL with a host"),
        (["inspect", "gw:8080", "--token", "t", "--table", "posts"], "'gw:8080' is not an http(s) URL"),
    ],
)
def test_a_mistake_is_one_line_and_status_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and said in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [["top", "http://127.0.0.1:9"], ["inspect", "http://127.0.0.1:9", "--token", "t", "--table", "posts"]],
    ids=["top", "inspect"],
)
def test_without_textual_the_command_says_which_extra_to_install_in_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TEXTUAL, *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "rxstore: this command needs the 'devtools' extra (module textual is missing): "
        "pip install 'rxstore[devtools]'"
    ]
