"""Shared plumbing: result rows, tables, timing, the machine, progress output."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project's root directory (benchmarks/ and rxstore/ live here)."""


@dataclass
class Row:
    """One measured value: a JSON record of ``--json``."""

    benchmark: str
    name: str
    variant: str
    value: float | None
    unit: str
    peer: bool = False
    note: str = ""


@dataclass
class Table:
    """The rows of one benchmark plus how to print them."""

    benchmark: str
    title: str
    columns: list[str]
    lines: list[list[str]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    """Extra data for the plots (not printed)."""

    def add(self, cells: Sequence[Any], *records: Row) -> None:
        self.lines.append([_cell(c) for c in cells])
        self.rows.extend(records)

    def row(self, name: str, variant: str, value: float | None, unit: str, **kw: Any) -> Row:
        return Row(self.benchmark, name, variant, value, unit, **kw)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def fmt(value: float | None, digits: int = 3) -> str:
    """Format a number for a table: thousands separators, ``digits`` significant digits."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.{digits}g}"


def rate(
    events: int, run: Callable[[], object], *, repeats: int = 3, setup: Callable[[], object] | None = None
) -> float:
    """Run ``run`` ``repeats`` times (each processing ``events`` events); return the median events/s.

    Timed in CPU seconds of this process (the work is single-threaded and CPU-bound), so a
    busy machine slows the run down but does not skew the result much.
    """
    rates = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        gc.collect()
        start = time.process_time()
        run()
        rates.append(events / (time.process_time() - start))
    return statistics.median(rates)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q`` quantile (0..1) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[index]


def machine() -> dict[str, str]:
    """Describe the machine the numbers come from."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for module in (
        "reactivex",
        "socketio",
        "engineio",
        "aiohttp",
        "immutables",
        "msgpack",
        "reaktiv",
        "pydux",
    ):
        try:
            mod = __import__(module)
            versions[module] = getattr(mod, "__version__", None) or _dist_version(module)
        except ImportError:
            versions[module] = "not installed"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return {
        "load average at start": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": mem,
        **{k: str(v) for k, v in versions.items()},
    }


def _dist_version(module: str) -> str:
    from importlib import metadata

    names = {"socketio": "python-socketio", "engineio": "python-engineio"}
    try:
        return metadata.version(names.get(module, module))
    except metadata.PackageNotFoundError:
        return "?"


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The JSON commands a benchmark's helper process reads from stdin, one a line, until stdin closes."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        yield json.loads(line)


def reply(message: dict[str, Any]) -> None:
    """Answer the benchmark that started this helper process: one JSON line on stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Output:
    """Tables and progress on the terminal: rich when installed, plain text otherwise."""

    def __init__(self) -> None:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        except ImportError:
            self.console: Any = None
            self.progress: Any = None
        else:
            self.console = Console()
            if not self.console.is_terminal:
                self.console.width = max(self.console.width, 150)
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[step]}"),
                console=self.console,
                transient=False,
            )
        self._task: Any = None

    def __enter__(self) -> Output:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, description: str, total: int) -> None:
        if self.progress is not None:
            self._task = self.progress.add_task(description, total=total, step="")
        else:
            print(f"== {description}", file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        """Report the step about to run."""
        if self.progress is not None and self._task is not None:
            self.progress.update(self._task, step=text)
        else:
            print(f"   {text}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        if self.progress is not None and self._task is not None:
            self.progress.advance(self._task)

    def finish(self) -> None:
        if self.progress is not None and self._task is not None:
            task = self.progress.tasks[self._task]
            self.progress.update(self._task, completed=task.total, step="done")

    def print_table(self, table: Table) -> None:
        if self.console is not None:
            from rich.table import Table as RichTable

            rich_table = RichTable(title=table.title, title_justify="left")
            for i, column in enumerate(table.columns):
                rich_table.add_column(column, justify="left" if i == 0 else "right")
            for line in table.lines:
                rich_table.add_row(*line)
            self.console.print(rich_table)
            for note in table.notes:
                self.console.print(f"  [dim]{note}[/dim]")
        else:
            print()
            print(render_markdown(table))

    def print(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)
        else:
            print(text)


def render_markdown(table: Table) -> str:
    """Render a table as GitHub markdown (used for plain output and docs)."""
    widths = [max(len(c), *(len(line[i]) for line in table.lines)) for i, c in enumerate(table.columns)]
    out = [f"### {table.title}", ""]
    out.append("| " + " | ".join(c.ljust(w) for c, w in zip(table.columns, widths, strict=True)) + " |")
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table.lines:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
    for note in table.notes:
        out.append("")
        out.append(f"{note}")
    return "\n".join(out)


def write_json(path: Path, tables: Iterable[Table], meta: dict[str, Any]) -> None:
    records = [asdict(row) for table in tables for row in table.rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": meta, "records": records}, indent=1) + "\n")
