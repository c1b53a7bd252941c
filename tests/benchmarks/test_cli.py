"""``python -m benchmarks``: plain help text, and no plots written into the repository unless asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench

ROOT = Path(__file__).resolve().parents[2]
TINY = """
from benchmarks._common import Table


def run(out, *, quick):
    table = Table("latency", "tiny latency table", ["variant", "p50"])
    table.add(["sqlite", 1.0])
    table.series = {"sqlite": [0.001, 0.002, 0.003]}
    return [table]
"""


def test_help_is_plain_text_without_rst_markup() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    ).stdout
    assert "``" not in out and "--plots-dir DIR" in out and "docs/benchmarks.md" in out


@pytest.fixture
def tiny_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A benchmark that returns a latency table at once (the real ones take tens of seconds)."""
    pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install -e '.[bench]'")
    (tmp_path / "tiny_bench.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(bench.BENCHMARKS, "tiny", "tiny_bench")
    return "tiny"


def _tracked_plots() -> dict[Path, tuple[int, bytes]]:
    return {
        path: (path.stat().st_mtime_ns, path.read_bytes()) for path in (ROOT / "docs" / "img").glob("*.png")
    }


def test_a_run_writes_no_plots_unless_plots_dir_is_given(
    tiny_benchmark: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --plots-dir the tracked docs/img/*.png stay as they are; with it, the plot goes there."""
    before = _tracked_plots()
    assert bench.main(["--only", tiny_benchmark]) == 0
    assert "plot:" not in capsys.readouterr().out
    assert _tracked_plots() == before
    assert bench.main(["--only", tiny_benchmark, "--plots-dir", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "latency_percentiles.png").stat().st_size > 0
    assert _tracked_plots() == before


def test_live_queries_suite_runs_quick_and_routes_each_change_to_its_subscriptions(tmp_path: Path) -> None:
    """``--only live_queries --quick`` times each row; a change reaches just the subscriptions it matches."""
    out = tmp_path / "live.json"
    assert bench.main(["--quick", "--only", "live_queries", "--json", str(out)]) == 0
    records = json.loads(out.read_text())["records"]
    timed = {r["variant"]: r["value"] for r in records if r["unit"] == "us/change"}
    rows = ("a", "a10", "b", "c", "e", "r10", "r", "d", "d0", "w0", "w")
    assert set(timed) == {f"{row} {batch} per broadcast" for row in rows for batch in (1, 200)}
    assert all(value > 0 for value in timed.values())
    events = {r["variant"]: r["value"] for r in records if r["unit"] == "events/change"}
    assert events == {
        "a events": 1.0,
        "a10 events": 10.0,
        "b events": 10.0,
        "c events": 1.0,
        "e events": 10.0,
        "r10 events": 10.0,
        "r events": 10.0,
        "d events": 10.0,
    }
    refills = {r["variant"]: r["value"] for r in records if r["unit"] == "refills/change"}
    assert refills["w0 refills"] == 0 and 0 < refills["w refills"] < 0.2  # the deletes in full windows
    moves = {r["variant"]: r["value"] for r in records if r["unit"] == "ms"}
    assert set(moves) == {"m join", "m leave"} and all(ms > 0 for ms in moves.values())


@pytest.mark.postgres
def test_pg_capture_suite_runs_quick_and_measures_every_mode_and_writer_setup(tmp_path: Path) -> None:
    """``--only pg_capture --quick`` times every mode x writer setup; each capture sees every row."""
    from benchmarks._capture import capture_keyword
    from benchmarks.pg_capture import SETUPS, WAL2JSON
    from tests.services import PostgresServer, require_or_skip

    reason = PostgresServer.missing() or (None if WAL2JSON.is_file() else f"{WAL2JSON} is missing")
    if reason:
        require_or_skip(reason)
    out = tmp_path / "pg_capture.json"
    assert bench.main(["--quick", "--only", "pg_capture", "--json", str(out)]) == 0
    records = json.loads(out.read_text())["records"]
    modes = ["a", "b", "d", "e"] + (["c"] if capture_keyword() else [])
    rates = {r["variant"]: r["value"] for r in records if r["unit"] == "rows/s"}
    assert set(rates) == {f"{mode} {setup.key}" for mode in modes for setup in SETUPS}
    assert all(value > 0 for value in rates.values()), rates
    captured = {r["variant"]: r["value"] for r in records if r["unit"] == "captured/written"}
    assert captured == {f"{mode} captured": 1.0 for mode in modes if mode != "a"}


SIZED = """
from benchmarks._common import Table


def run(out, *, quick, clients=None, workers=None):
    table = Table("sized", "sizes seen", ["clients", "workers"])
    table.add([clients, workers])
    table.rows.append(table.row("sized", "clients", clients, "clients"))
    table.rows.append(table.row("sized", "workers", sum(workers or ()) or None, "workers"))
    return [table]
"""
UNSIZED = """
from benchmarks._common import Table


def run(out, *, quick):
    return [Table("unsized", "no sizes", ["quick"], [[str(quick)]])]
"""


@pytest.fixture
def sized_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two instant benchmarks: one whose run() takes clients/workers, one whose run() takes neither."""
    (tmp_path / "sized_bench.py").write_text(SIZED)
    (tmp_path / "unsized_bench.py").write_text(UNSIZED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(bench.BENCHMARKS, "sized", "sized_bench")
    monkeypatch.setitem(bench.BENCHMARKS, "unsized", "unsized_bench")


def test_clients_and_workers_reach_the_benchmarks_whose_run_takes_them_and_no_other(
    sized_benchmarks: None, tmp_path: Path
) -> None:
    """``--clients 10000 --workers 1 2 4`` reach a run() with those parameters; one without runs as before."""
    out = tmp_path / "sized.json"
    argv = [
        "--only",
        "sized",
        "unsized",
        "--clients",
        "10000",
        "--workers",
        "1",
        "2",
        "4",
        "--json",
        str(out),
    ]
    assert bench.main(argv) == 0
    values = {r["variant"]: r["value"] for r in json.loads(out.read_text())["records"]}
    assert values == {"clients": 10000, "workers": 7}
    assert bench.main(["--only", "sized", "unsized", "--json", str(out)]) == 0
    values = {r["variant"]: r["value"] for r in json.loads(out.read_text())["records"]}
    assert values == {"clients": None, "workers": None}, "without the options each keeps its own sizes"


@pytest.mark.parametrize("bad", [["--clients", "0"], ["--workers", "2", "x"], ["--clients", "-5"]])
def test_clients_and_workers_must_be_whole_numbers_of_at_least_one(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A size below 1 or not a number is a usage error (status 2), before any benchmark runs."""
    with pytest.raises(SystemExit) as exited:
        bench.main(["--only", "inproc", *bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "use 1 or more" in err or "is not a whole number" in err, err


def test_scale_is_registered_and_its_run_takes_clients_and_workers() -> None:
    """``--only scale`` exists, and scale.run / storm.run take the sizes (fanout keeps its own)."""
    import inspect

    assert bench.BENCHMARKS["scale"] == "benchmarks.scale"
    from benchmarks import scale, storm

    assert {"clients", "workers"} <= set(inspect.signature(scale.run).parameters)
    assert bench._sizes(storm.run, {"clients": 5, "workers": [1]}) == {"clients": 5, "workers": [1]}
    assert bench._sizes(scale.run, {"clients": None, "workers": [1]}) == {"workers": [1]}


def test_the_instructions_workload_applies_every_change_it_feeds() -> None:
    """``python -m benchmarks.instructions --workload``: what each callgrind run executes, checked."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "benchmarks.instructions", "--workload", "--batch=50", "--feed=200"]
    done = subprocess.run([*command, "--total=400"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
