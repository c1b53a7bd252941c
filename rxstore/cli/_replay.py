"""``rxstore replay FILE``: a recording (``root.record()``) turned into a pytest regression test."""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path

from rxstore.cli._checks import CommandError
from rxstore.client.recorder import Recording, StoreEntry
from rxstore.protocol.errors import RecordingError
from rxstore.testing.replay import check_replayable

__all__ = ["regression_test", "replay_command"]


def replay_command(args: argparse.Namespace) -> int:
    """Write the test of the recording ``args.file`` to ``args.output``; say what it holds.

    Raises:
        CommandError: The file cannot be read, is not a recording, cannot be replayed, a store
            class cannot be imported by a test, or the test file exists (without ``--force``).
    """
    source = Path(args.file)
    try:
        recording = Recording.load(source)
        check_replayable(recording)
    except FileNotFoundError:
        raise CommandError(f"no recording file {source}: save one with rec.save(path)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {source}: {exc}") from exc
    except RecordingError as exc:
        raise CommandError(
            f"cannot replay {exc}" if exc.reason in ("unreplayable", "local_state") else str(exc)
        ) from exc
    target = Path(args.output) if args.output else Path(f"test_replay_{_identifier(source.stem)}.py")
    if target.exists() and not args.force:
        raise CommandError(f"{target} exists: name another with -o, or overwrite it with --force")
    target.write_text(regression_test(recording, source.name), encoding="utf-8")
    states = sum(len(recording.states(store.name)) for store in recording.stores)
    print(
        f"rxstore: wrote {target}: {len(recording.frames)} frames and {states} states of "
        f"{len(recording.stores)} store(s) to replay; run it with: pytest {target}",
        flush=True,
    )
    return 0


def regression_test(recording: Recording, source: str) -> str:
    """The text of a pytest module replaying ``recording`` (read from the file named ``source``).

    Raises:
        CommandError: A store's class is defined where a test cannot import it.
    """
    imports, calls = _stores(recording.stores)
    text = recording.dumps().replace("'", "\\u0027")  # only inside JSON strings: the raw literal stays closed
    names = ", ".join(store.name for store in recording.stores) or "no store"
    began = recording.began or "?"
    return f'''"""A regression test made by ``rxstore replay {source}`` (the recording began {began}).

It replays the {len(recording.frames)} recorded frames through new stores of the recorded classes, in
virtual time at their recorded times, and checks each state they publish against the recorded one
(``rxstore.testing.Replay``, by value): the first that differs is named. Build the stores as the app
does, if their constructors take more (``where=``, ``order_by=`` ...), in this order.
"""

from __future__ import annotations

from rxstore.testing import Replay
{imports}

RECORDING = r\'\'\'
{text}\'\'\'


def test_the_recorded_session_replays() -> None:
    """{names}: the recorded states, frame by frame."""
    stores = [
{calls}
    ]
    Replay.loads(RECORDING, stores).check()
'''


def _stores(stores: tuple[StoreEntry, ...]) -> tuple[str, str]:
    """The import lines of the stores' classes, and the calls that build them (one a line)."""
    modules: dict[str, dict[str, str]] = {}  # module -> class name -> name in the test
    used: set[str] = {"Replay", "RECORDING", "annotations"}
    calls = []
    for store in stores:
        module, _, qualname = store.cls.partition(":")
        if module == "__main__" or "<locals>" in qualname or not module:
            raise CommandError(
                f"store {store.name!r} is of class {qualname} defined in {module or '?'}"
                f"{' (inside a function)' if '<locals>' in qualname else ''}: a test cannot import it; "
                "define it in a module of the app and record again"
            )
        top, _, rest = qualname.partition(".")
        names = modules.setdefault(module, {})
        if top not in names:
            alias = top
            number = 2
            while alias in used:
                alias, number = f"{top}_{number}", number + 1
            names[top] = alias
            used.add(alias)
        cls = names[top] + (f".{rest}" if rest else "")
        calls.append(f"        {cls}({_arguments(store, qualname)}),")
    lines = []
    for module, names in sorted(modules.items()):
        parts = sorted(top if alias == top else f"{top} as {alias}" for top, alias in names.items())
        lines.append(f"from {module} import {', '.join(parts)}")
    return "\n".join(lines), "\n".join(calls)


def _arguments(store: StoreEntry, qualname: str) -> str:
    name = re.sub(r"#\d+$", "", store.name)  # a second store of one name was recorded as name#2
    arguments = [] if name == qualname.rpartition(".")[2] else [f"name={name!r}"]
    if store.event is not None:
        arguments.append(f"event={store.event!r}")
    return ", ".join(arguments)


def _identifier(stem: str) -> str:
    name = re.sub(r"\W+", "_", stem).strip("_") or "recording"
    return f"{name}_" if keyword.iskeyword(name) else name
