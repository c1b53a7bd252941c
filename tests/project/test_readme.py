"""Every snippet of README.md runs as pasted (issue 13, item 1).

The live-table section runs for real, as a reader would: its Python is saved
as ``live.py`` and its shell block runs in bash (``rxstore serve ... &``, the
token exported from ``rxstore token``, ``python live.py``) in a fresh
directory; then its write one-liner changes the table and ``live.py`` prints
the new count. Only the port is changed (to a free one) so that the test never
collides with a gateway already on 8080; ``PYTHONUNBUFFERED`` lets the test read
what a terminal would show at once. The marble section's test is run too.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
SECTIONS = dict(
    (part.split("\n", 1)[0].strip(), part) for part in re.split(r"^## ", README, flags=re.MULTILINE)[1:]
)
LIVE = SECTIONS["A table, live, in 15 lines"]
MARBLES = SECTIONS["Your own store, with a marble test"]
PLUGIN_OF = {"asyncio_mode": "pytest-asyncio", "asyncio_default_fixture_loop_scope": "pytest-asyncio"}
PLUGIN_OF["timeout"] = "pytest-timeout"
"""The pytest plugin that defines each setting of ``[tool.pytest.ini_options]`` a plugin defines."""
WAIT = 40.0
"""Seconds to wait for one line of output (two Python processes start on a loaded machine)."""


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def shell_env() -> dict[str, str]:
    """A reader's shell: this venv's ``python``/``rxstore`` first on PATH, no RXSTORE_* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RXSTORE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_every_python_snippet_of_the_readme_is_run_by_this_file() -> None:
    """The README has the two Python snippets run below, and no other (a new one needs a test here)."""
    assert len(blocks(README, "python")) == 2
    assert len(blocks(LIVE, "python")) == 1 and len(blocks(MARBLES, "python")) == 1


def test_the_live_table_example_is_fifteen_lines_and_calls_main() -> None:
    """The heading's promise (15 lines of code), and the example runs ``main()`` (it did not)."""
    [code] = blocks(LIVE, "python")
    assert len([line for line in code.splitlines() if line.strip()]) == 15
    assert code.rstrip().endswith("asyncio.run(main())")
    assert "await root.live(" in code


def test_the_marble_snippet_runs_and_its_test_passes() -> None:
    """The marble section's code runs, and the test it defines passes."""
    [code] = blocks(MARBLES, "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md#marbles", "exec"), namespace)
    namespace["test_likes_count_each_like"]()


def test_the_marble_section_installs_pytest_and_its_test_passes_with_no_warning(tmp_path: Path) -> None:
    """The section's path from "install" to "my first store test passes": its command installs an
    extra that brings pytest and every plugin the repository's pytest settings name (else pytest
    warns ``Unknown config option`` three times), then ``pytest test_likes.py`` passes, run as a
    reader in the repository root would (its settings apply), config warnings made errors."""
    [command] = blocks(MARBLES, "bash")
    install, run = (part.split("#")[0].strip() for part in command.split("&&"))
    [extra] = re.fullmatch(r'pip install -e "\.\[(\w+)\]"', install).groups()  # type: ignore[union-attr]
    assert run == "pytest test_likes.py"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {re.split(r"[<>=\[]", d)[0] for d in pyproject["project"]["optional-dependencies"][extra]}
    settings = pyproject["tool"]["pytest"]["ini_options"]
    needed = {"pytest"} | {PLUGIN_OF[key] for key in settings if key in PLUGIN_OF}
    assert needed <= installed, f"the {extra!r} extra lacks {needed - installed}"
    [code] = blocks(MARBLES, "python")
    (tmp_path / "test_likes.py").write_text(code)
    options = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-p", "no:cacheprovider"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *options,
            "-W",
            "error::pytest.PytestConfigWarning",
            "test_likes.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "warning" not in done.stdout.lower()


def test_every_link_of_the_readme_names_a_file_of_the_repository() -> None:
    """A reader on a code host follows each relative link to a file that exists."""
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links no page of docs/"
    assert [target for target in local if not (ROOT / target).is_file()] == []


def test_the_readme_names_every_subcommand_rxstore_help_lists() -> None:
    """The More section names each ``rxstore`` command that ``rxstore --help`` lists."""
    done = subprocess.run(
        [sys.executable, "-m", "rxstore", "--help"], capture_output=True, text=True, timeout=60
    )
    listing = done.stdout.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"^    (\w+)\s", listing, flags=re.MULTILINE)
    assert len(commands) >= 4
    assert [c for c in commands if f"`rxstore {c}`" not in SECTIONS["More"]] == []


async def read_until(stream: asyncio.StreamReader, wanted: str, seen: list[str]) -> None:
    """Read lines into ``seen`` until one is ``wanted``; fail with what was printed."""
    while wanted not in seen:
        try:
            line = await asyncio.wait_for(stream.readline(), WAIT)
        except TimeoutError:
            raise AssertionError(f"no {wanted!r} within {WAIT} s; printed: {seen}") from None
        assert line, f"the shell ended before printing {wanted!r}; printed: {seen}"
        seen.append(line.decode().rstrip())


async def test_the_live_table_section_runs_as_pasted_against_rxstore_serve(tmp_path: Path) -> None:
    """Saved as live.py, with the section's shell block (serve in the background, token exported,
    ``python live.py``) in an empty directory: it prints ``posts: 0`` (never a count before the
    snapshot), and ``posts: 1`` after the section's write one-liner."""
    [live] = blocks(LIVE, "python")
    serve_and_run, write = blocks(LIVE, "bash")
    port = str(free_port())
    (tmp_path / "live.py").write_text(live.replace("8080", port))
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        serve_and_run.replace("8080", port),
        cwd=tmp_path,
        env=shell_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: the background gateway is stopped with it
    )
    seen: list[str] = []
    try:
        assert shell.stdout is not None
        await read_until(shell.stdout, "posts: 0", seen)
        writer = await asyncio.create_subprocess_exec("bash", "-c", write, cwd=tmp_path, env=shell_env())
        assert await asyncio.wait_for(writer.wait(), WAIT) == 0
        await read_until(shell.stdout, "posts: 1", seen)
        while not any(line.startswith("rxstore: serving posts") for line in seen):
            # Printed once every worker serves: the first may serve live.py before that.
            line = await asyncio.wait_for(shell.stdout.readline(), WAIT)
            assert line, f"the shell ended before saying it serves; printed: {seen}"
            seen.append(line.decode().rstrip())
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(shell.wait(), 10)
        except TimeoutError:
            os.killpg(shell.pid, signal.SIGKILL)
            await shell.wait()
    counts = [line for line in seen if line.startswith("posts:")]
    assert counts == ["posts: 0", "posts: 1"]
    assert any(line.startswith("rxstore: serving posts") for line in seen)


async def test_the_live_table_example_says_so_when_nothing_listens_at_its_url(tmp_path: Path) -> None:
    """The README's promise: run with no gateway, ``live.py`` stops (about 10 s) with a
    ``ConnectError`` naming the URL, instead of hanging silently."""
    [live] = blocks(LIVE, "python")
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "live.py").write_text(live.replace("http://127.0.0.1:8080", url))
    script = await asyncio.create_subprocess_exec(
        sys.executable,
        "live.py",
        cwd=tmp_path,
        env={**shell_env(), "RXSTORE_TOKEN": "any"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(script.communicate(), 10 + WAIT)
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()
    assert script.returncode == 1 and not out
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(f"rxstore.protocol.errors.ConnectError: cannot connect to {url} within 10 s")
    # Told once: one traceback, no chained ones, no log line repeating it (issue 24, item 1).
    assert err.decode().count(f"cannot connect to {url}") == 1 and err.decode().count("Traceback") == 1
