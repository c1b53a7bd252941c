"""PNG plots of a run (matplotlib, Agg backend), written to ``--plots-dir`` (docs/img for the docs)."""

from __future__ import annotations

from pathlib import Path

from benchmarks._common import Table, percentile


def write(tables: list[Table], directory: Path) -> list[Path]:
    """Write the plots whose data is in ``tables``; return their paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    by_name = {t.benchmark: t for t in tables}
    written: list[Path] = []

    stores = by_name.get("stores")
    if stores is not None and stores.series:
        s = stores.series
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        ax.plot(s["stores"], s["rxstore batch=100"], "o-", label="rxstore, batches of 100")
        ax.plot(s["stores"], s["rxstore"], "o-", label="rxstore, unbatched")
        ax.plot(
            s["stores"],
            s["reactivex shared Subject"],
            "s--",
            label="reactivex: shared Subject, filter per store",
        )
        ax.plot(s["stores"], s["floor"], "^:", color="grey", label="dict -> callback (floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of stores")
        ax.set_ylabel("events / s")
        ax.set_title("Events/s vs number of stores (100k-entity table)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = directory / "events_vs_stores.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    batch = by_name.get("batch")
    if batch is not None and batch.series:
        s = batch.series
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        ax.plot(s["batch"], s["rxstore"], "o-", label="rxstore RootStore -> TableStore")
        ax.plot(s["batch"], s["reactivex"], "s--", label="reactivex scan over lists")
        ax.plot(s["batch"], s["floor"], "^:", color="grey", label="dict -> callback (floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events per frame (batch size)")
        ax.set_ylabel("events / s")
        ax.set_title("Events/s vs batch size (100k-entity table)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = directory / "events_vs_batch.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    latency = by_name.get("latency")
    if latency is not None and latency.series:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        qs = [50, 90, 99, 99.9]
        for label, values in latency.series.items():
            if not values:
                continue
            ys = [(percentile(values, q / 100) or 0.0) * 1000 for q in qs]  # the tables' nearest rank
            ax.plot([str(q) for q in qs], ys, "o-", label=label)
        ax.axhline(10, color="red", lw=0.8, ls="--", label="target p99 (SQLite) 10 ms")
        ax.axhline(15, color="purple", lw=0.8, ls=":", label="target p99 (PostgreSQL) 15 ms")
        ax.set_xlabel("percentile")
        ax.set_ylabel("commit -> client state (ms)")
        ax.set_title("Latency percentiles at 1,000 changes/s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = directory / "latency_percentiles.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
