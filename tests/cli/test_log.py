"""``rxstore log show | mark-restore``: the change log's epoch, as an operator runs it (a process)."""

from __future__ import annotations

import re
from pathlib import Path

from rxstore.gateway.log.open_log import open_change_log
from tests.cli.commands import assert_one_line_error, rxstore

EPOCH_LINE = re.compile(r"^rxstore: log epoch ([0-9a-f]{32}) -> ([0-9a-f]{32}) \(head seq (\d+)\): .+$")


async def test_log_show_and_mark_restore_print_one_line_and_exit_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    log = open_change_log(url)
    await log.open()
    await log.execute("CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT)")
    await log.watch("posts")
    await log.execute("INSERT INTO posts VALUES ('p1', 'one')")
    epoch = await log.epoch()
    await log.close()

    shown = rxstore("log", "show", "--db", url, cwd=tmp_path)
    assert (shown.returncode, shown.stdout, shown.stderr) == (
        0,
        f"rxstore: log epoch {epoch}, head seq 1, horizon 0\n",
        "",
    )
    marked = rxstore("log", "mark-restore", "--db", url, cwd=tmp_path)
    assert marked.returncode == 0 and marked.stderr == ""
    match = EPOCH_LINE.match(marked.stdout)
    assert match is not None and marked.stdout.endswith("\n") and marked.stdout.count("\n") == 1
    assert match.group(1) == epoch and match.group(2) != epoch and match.group(3) == "1"
    shown = rxstore("log", "show", "--db", "app.db", cwd=tmp_path)
    assert shown.stdout.startswith(f"rxstore: log epoch {match.group(2)},")


def test_mark_restore_of_a_missing_database_file_fails_in_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.db"
    assert_one_line_error(
        rxstore("log", "mark-restore", "--db", f"sqlite:///{missing}", cwd=tmp_path),
        f"no database file {missing}",
        "--db",
    )
    assert_one_line_error(rxstore("log", "mark-restore", cwd=tmp_path), "no database file rxstore.db")
    assert_one_line_error(
        rxstore("log", "mark-restore", "--db", "mysql://x", cwd=tmp_path), "argument --db", "sqlite:///app.db"
    )
    assert list(tmp_path.iterdir()) == []


def test_mark_restore_help_says_when_to_run_it(tmp_path: Path) -> None:
    out = rxstore("log", "mark-restore", "--help", cwd=tmp_path).stdout
    text = " ".join(out.split())
    assert "after restoring a backup" in text and "copying a database file" in text
