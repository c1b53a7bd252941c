"""``python -m benchmarks [--quick] [--json PATH] [--only NAME ...] [--clients N] [--workers W ...]``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

from benchmarks._common import Output, Table, machine, render_markdown, write_json

DESCRIPTION = (
    "Measure rxstore side by side with its peers (plain callbacks, raw reactivex, a bare "
    "python-socketio client, reaktiv, pydux) in one run on this machine, and print the tables. "
    "See docs/benchmarks.md."
)

BENCHMARKS = {
    "inproc": "benchmarks.inproc",
    "e2e": "benchmarks.e2e",
    "latency": "benchmarks.latency",
    "resume": "benchmarks.resume",
    "fanout": "benchmarks.fanout",
    "memory": "benchmarks.memory",
    "live_queries": "benchmarks.live_queries",
    "pg_capture": "benchmarks.pg_capture",
    "delivery": "benchmarks.delivery",
    "storm": "benchmarks.storm",
    "scale": "benchmarks.scale",
    "floods": "benchmarks.floods",
    "persist": "benchmarks.persist",
    "initial_sync": "benchmarks.initial_sync",
    "presence": "benchmarks.presence",
}


def _sizes(run: object, sizes: dict[str, object]) -> dict[str, object]:
    """The ``sizes`` given (not ``None``) that ``run`` accepts (by name, or through ``**kwargs``)."""
    parameters = inspect.signature(run).parameters.values()  # type: ignore[arg-type]
    anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    names = {p.name for p in parameters}
    return {k: v for k, v in sizes.items() if v is not None and (anything or k in names)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="smaller sizes; the whole run takes < 2 minutes")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write one record per row to PATH")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="write the tables as markdown to PATH")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--plots-dir",
        type=Path,
        metavar="DIR",
        help="write the PNG plots to DIR (docs/img to update the docs' plots; default: no plots)",
    )
    parser.add_argument(
        "--clients",
        type=_positive,
        metavar="N",
        help="clients of the fan-out benchmarks that take a size (scale, storm; default: their 2-core "
        "sizes, e.g. 1,000; the issue's target is 10,000 on 16 cores)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        nargs="+",
        metavar="W",
        help="gateway worker counts of the scale benchmark (rxstore serve --workers W; default: 1 2 4 8 16, "
        "those the machine has the cores for)",
    )
    parser.add_argument(
        "--rows",
        type=_positive,
        nargs="+",
        metavar="N",
        help="table sizes of the initial_sync benchmark (default: 200000 1000000; --quick: 20000 100000)",
    )
    parser.add_argument("--no-plots", action="store_true", help=argparse.SUPPRESS)  # the default now
    args = parser.parse_args(argv)

    meta = machine()
    meta["mode"] = "quick" if args.quick else "full"
    tables: list[Table] = []
    failed: list[str] = []
    started = time.perf_counter()
    with Output() as out:
        out.print("machine: " + ", ".join(f"{k} {v}" for k, v in meta.items()))
        for name, module_name in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                module = importlib.import_module(module_name)
                sizes = _sizes(
                    module.run, {"clients": args.clients, "workers": args.workers, "rows": args.rows}
                )
                produced = module.run(out, quick=args.quick, **sizes)
            except Exception:
                failed.append(name)
                out.print(
                    f"[red]benchmark {name} failed[/red]" if out.console else f"benchmark {name} failed"
                )
                traceback.print_exc()
                continue
            for table in produced:
                table.notes.append(f"({name}: {time.perf_counter() - t0:.1f} s)") if table is produced[
                    -1
                ] else None
                out.print_table(table)
            tables.extend(produced)
        if args.plots_dir is not None and not args.no_plots and tables:
            from benchmarks import plots

            written = plots.write(tables, args.plots_dir)
            for path in written:
                out.print(f"plot: {path}")
        total = time.perf_counter() - started
        meta["seconds"] = f"{total:.1f}"
        out.print(f"total: {total:.1f} s")
    if args.json:
        write_json(args.json, tables, meta)
    if args.markdown:
        args.markdown.write_text("\n\n".join(render_markdown(t) for t in tables) + "\n")
    return 1 if failed else 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: use 1 or more")
    return value


if __name__ == "__main__":
    sys.exit(main())
