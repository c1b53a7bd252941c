"""Instructions per event under callgrind: the in-process rxstore contestant, load-independent.

``python -m benchmarks.instructions`` runs this module's workload four times under
``valgrind --tool=callgrind`` (unbatched and in batches, each with a feed of
``--small`` and of ``--large`` events; every run makes the same ``--large``
payloads, so set-up cancels out) and prints the instructions per event:
``(Ir(large) - Ir(small)) / (large - small)``. The workload is benchmark 1's
rxstore row (docs/benchmarks.md): a ``TableStore`` of 100,000 dict rows with
one subscriber, fed ``rxstore:batch`` frames as the transport decodes them
(``rxstore.protocol.frames.decode_json``) through ``root.router.on_frame``.
Timestamps are fixed, and ``PYTHONHASHSEED=0``, so runs are byte-identical.

``python -m benchmarks.instructions --workload --batch 100 --feed 4200`` runs the
workload once, without valgrind (what each callgrind run executes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENTITIES = 100_000
EVENT = "post_update"
TS = 1_700_000_000.25


def _row(index: int, likes: int = 0) -> dict[str, Any]:
    return {"id": f"p{index}", "title": f"post {index}", "body": "", "author": "bench", "likes": likes}


def _payloads(count: int) -> list[dict[str, Any]]:
    pick = random.Random(1)
    return [
        {
            "seq": seq,
            "topic": "posts",
            "op": "UPDATE",
            "record": _row(pick.randrange(ENTITIES), seq),
            "old": None,
            "ts": TS,
        }
        for seq in range(1, count + 1)
    ]


def workload(batch: int, feed: int, total: int) -> None:
    """Feed ``feed`` of ``total`` prepared changes, ``batch`` per frame, to a 100k-row table store."""
    from rxstore import RootStore, TableStore
    from rxstore.protocol.events import BATCH, SNAPSHOT
    from rxstore.protocol.frames import decode_json
    from rxstore.testing import VirtualLink

    class Posts(TableStore[dict[str, Any]]):
        table = "posts"

    payloads = _payloads(total)
    frames = [
        decode_json(json.dumps([BATCH, {"events": [[EVENT, p] for p in payloads[i : i + batch]]}]))[1]
        for i in range(0, total, batch)
    ]
    store = Posts()
    root = RootStore(stores=[store], transport=VirtualLink())
    root.setup_domain_event_handlers()
    on_frame = root.router.on_frame
    on_frame(
        SNAPSHOT, {"topic": "posts", "event": EVENT, "seq": 0, "records": [_row(i) for i in range(ENTITIES)]}
    )
    store.state.subscribe(lambda _state: None)
    for frame in frames[: feed // batch]:
        on_frame(BATCH, frame)
    last = payloads[feed - 1]["record"]
    if root.cursor != feed or store.value[last["id"]]["likes"] != last["likes"]:
        sys.exit(f"instructions: the store did not apply the {feed} changes fed")


def _instructions(batch: int, feed: int, total: int, directory: Path) -> int:
    out = directory / f"b{batch}-f{feed}.cg"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "--log-file=" + str(directory / f"b{batch}-f{feed}.log"),
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--workload",
        f"--batch={batch}",
        f"--feed={feed}",
        f"--total={total}",
    ]
    subprocess.run(command, check=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if found is None:
        sys.exit(f"instructions: no total in {out}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="events per frame of the batched row (default 100)"
    )
    parser.add_argument("--small", type=int, default=200, help="events of the short feed (default 200)")
    parser.add_argument("--large", type=int, default=4200, help="events of the long feed (default 4200)")
    parser.add_argument("--workload", action="store_true", help="run the workload once (inside callgrind)")
    parser.add_argument("--feed", type=int, help="with --workload: events fed")
    parser.add_argument("--total", type=int, help="with --workload: changes prepared")
    args = parser.parse_args(argv)
    if args.workload:
        workload(args.batch, args.feed, args.total)
        return 0
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for label, batch in (("unbatched", 1), (f"batches of {args.batch}", args.batch)):
            print(f"   {label}: 2 runs under callgrind", file=sys.stderr, flush=True)
            small = _instructions(batch, args.small, args.large, directory)
            large = _instructions(batch, args.large, args.large, directory)
            print(f"{label}: {(large - small) / (args.large - args.small):,.0f} instructions per event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
