"""Test hosts in network namespaces on one bridge, and the nftables rules that break their links.

::

    lab = NetLab(["pg", "redis", "node1", "client1"])
    lab.up()                          # namespaces, veths, addresses, an nft table per host
    pg = lab.hosts["pg"]              # pg.netns, pg.address (10.77.S.10 ...)
    rule = lab.drop("node1", lab.root_address, port=5432, direction="out")   # one way
    rule = lab.drop("node1", pg.address, loss=10)                           # 10 % both ways
    lab.heal(rule)                    # or lab.heal_all()
    lab.down()                        # everything removed (also done by NetLab.sweep() later)

Layout: a namespace of its own holds the bridge ``br0``; each host is a
namespace with one veth (``eth0``) on the bridge and an address
``10.77.S.N/24``; the test process's namespace joins the bridge too
(``10.77.S.1``, on a veth named ``rxn<pid>x<n>``), so it reaches every host
and they reach it (the delaying proxies of ``schedule.py`` listen
there). ``S`` is a subnet no route of this machine uses yet. Nothing leaves
that subnet: no host has a default route.

Faults are nftables rules in the host's own namespace (table
``inet rxfault``): ``drop`` for a partition, ``numgen random mod 100 < N drop``
for a loss of N %; ``direction="out"`` drops what the host sends to the peer,
``"in"`` what it receives from it, ``"both"`` both (a two-way partition).

Every name carries the pid of the process that made it (namespaces
``rxn-<pid>-<n>-<host>``), so :meth:`NetLab.sweep` removes the leftovers
of a run that was killed (its pid is gone) without touching a live run's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from typing import ClassVar, Literal

import attrs

__all__ = ["Direction", "Host", "NetLab", "Rule"]

Direction = Literal["out", "in", "both"]

PREFIX = "rxn"
_NETNS = re.compile(rf"^{PREFIX}-(\d+)-(\d+)-")
_ROOT_LINK = re.compile(rf"^{PREFIX}(\d+)x(\d+)$")
_HANDLE = re.compile(r"# handle (\d+)")
_COUNTER = itertools.count(1)
TABLE = "rxfault"


@attrs.frozen
class Host:
    """One test host: its namespace and its address on the bridge."""

    name: str
    netns: str
    address: str


@attrs.frozen
class Rule:
    """One nftables rule in a host's namespace (what :meth:`NetLab.heal` removes)."""

    host: str
    chain: str
    handle: int
    text: str


def _run(args: Sequence[str], *, check: bool = True) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(netns: str) -> None:
    """SIGKILL every process still running in ``netns`` (a namespace outlives ``ip netns del``
    while a process holds it)."""
    for line in _run(["ip", "netns", "pids", netns], check=False).split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def _netns_names() -> list[str]:
    return [
        line.split()[0] for line in _run(["ip", "netns", "list"], check=False).splitlines() if line.strip()
    ]


class NetLab:
    """Hosts in network namespaces on one bridge, made and removed by the test.

    Args:
        hosts: Host names (letters, digits; at most 20 hosts), in the order their addresses are
            given (``.10``, ``.11``, ...).
    """

    _up: ClassVar[list[NetLab]] = []

    def __init__(self, hosts: Sequence[str]) -> None:
        assert len(hosts) <= 20 and len(set(hosts)) == len(hosts), hosts
        self.run = f"{os.getpid()}-{next(_COUNTER)}"
        self.prefix = f"{PREFIX}-{self.run}"
        self.root_link = f"{PREFIX}{self.run.replace('-', 'x')}"
        self.bridge_netns = f"{self.prefix}-br"
        self.subnet = _free_subnet()
        self.root_address = f"10.77.{self.subnet}.1"
        self.hosts = {
            name: Host(name, f"{self.prefix}-{name}", f"10.77.{self.subnet}.{10 + i}")
            for i, name in enumerate(hosts)
        }
        self.rules: list[Rule] = []
        self._made: list[str] = []

    # -- whether it can run here ---------------------------------------------------

    @staticmethod
    def missing() -> str | None:
        """Why namespaced hosts cannot be made here, or ``None`` when they can."""
        if os.geteuid() != 0:
            return "network namespaces need root (ip netns add)"
        for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
            if shutil.which(tool) is None:
                return f"`{tool}` not found (Debian package `{package}`)"
        return None

    @staticmethod
    def sweep() -> list[str]:
        """Remove the namespaces and root veths of runs whose process is gone; return their names."""
        removed = []
        for name in _netns_names():
            match = _NETNS.match(name)
            if match and not _alive(int(match.group(1))):
                _kill_inside(name)
                _run(["ip", "netns", "del", name], check=False)
                removed.append(name)
        for line in _run(["ip", "-o", "link", "show"], check=False).splitlines():
            parts = line.split(":")
            link = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
            match = _ROOT_LINK.match(link)
            if match and not _alive(int(match.group(1))):
                _run(["ip", "link", "del", link], check=False)
                removed.append(link)
        return removed

    # -- up and down ---------------------------------------------------------------

    def up(self) -> None:
        """Make the bridge, every host and the root's link; on any failure remove what was made."""
        NetLab._up.append(self)
        try:
            self._netns(self.bridge_netns)
            self._in(self.bridge_netns, "ip", "link", "add", "br0", "type", "bridge")
            self._in(self.bridge_netns, "ip", "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts.values()):
                self._host(i, host)
            _run(["ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "vroot", "netns",
                  self.bridge_netns])  # fmt: skip
            self._made.append(f"link:{self.root_link}")
            _run(["ip", "addr", "add", f"{self.root_address}/24", "dev", self.root_link])
            _run(["ip", "link", "set", self.root_link, "up"])
            self._in(self.bridge_netns, "ip", "link", "set", "vroot", "master", "br0", "up")
        except BaseException:
            self.down()
            raise

    def _netns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._made.append(name)
        self._in(name, "ip", "link", "set", "lo", "up")

    def _host(self, index: int, host: Host) -> None:
        self._netns(host.netns)
        port = f"vh{index}"
        _run(["ip", "link", "add", "eth0", "netns", host.netns, "type", "veth", "peer", "name", port,
              "netns", self.bridge_netns])  # fmt: skip
        self._in(host.netns, "ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        self._in(host.netns, "ip", "link", "set", "eth0", "up")
        self._in(self.bridge_netns, "ip", "link", "set", port, "master", "br0", "up")
        table = (
            f"table inet {TABLE} {{\n"
            "  chain input { type filter hook input priority 0; policy accept; }\n"
            "  chain output { type filter hook output priority 0; policy accept; }\n"
            "}\n"
        )
        proc = subprocess.run(
            ["ip", "netns", "exec", host.netns, "nft", "-f", "-"],
            input=table, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"nft in {host.netns} failed: {proc.stderr.strip()}")

    def down(self) -> None:
        """Remove everything this lab made (processes inside its namespaces are killed first)."""
        for made in reversed(self._made):
            if made.startswith("link:"):
                _run(["ip", "link", "del", made[5:]], check=False)
            else:
                _kill_inside(made)
                _run(["ip", "netns", "del", made], check=False)
        self._made.clear()
        self.rules.clear()
        if self in NetLab._up:
            NetLab._up.remove(self)

    @staticmethod
    def down_all() -> None:
        """Remove every lab of this process that is still up (a test's teardown, whatever it did)."""
        for lab in list(NetLab._up):
            lab.down()

    def __enter__(self) -> NetLab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _in(self, netns: str, *args: str) -> str:
        return _run(["ip", "netns", "exec", netns, *args])

    # -- faults ----------------------------------------------------------------------

    def drop(
        self,
        host: str,
        peer: str,
        *,
        port: int | None = None,
        direction: Direction = "both",
        loss: int | None = None,
    ) -> list[Rule]:
        """Drop packets between ``host`` and address ``peer`` (only those of TCP port ``port`` of the
        peer, when given): all of them, or ``loss`` % at random. Returns the rules added."""
        assert loss is None or 1 <= loss <= 100, loss
        chains = {"out": ["output"], "in": ["input"], "both": ["output", "input"]}[direction]
        rules = []
        for chain in chains:
            ends = ("daddr", "dport") if chain == "output" else ("saddr", "sport")
            match = ["ip", ends[0], peer]
            if port is not None:
                match += ["tcp", ends[1], str(port)]
            if loss is not None and loss < 100:
                match += ["numgen", "random", "mod", "100", "<", str(loss)]
            out = self._in(self.hosts[host].netns, "nft", "-e", "-a", "add", "rule", "inet", TABLE, chain,
                           *match, "drop")  # fmt: skip
            found = _HANDLE.search(out)
            if found is None:
                raise RuntimeError(f"nft printed no handle for the rule: {out!r}")
            rule = Rule(host, chain, int(found.group(1)), " ".join(match))
            self.rules.append(rule)
            rules.append(rule)
        return rules

    def heal(self, rules: Sequence[Rule]) -> None:
        """Remove ``rules``."""
        for rule in rules:
            if rule in self.rules:
                self.rules.remove(rule)
                self._in(self.hosts[rule.host].netns, "nft", "delete", "rule", "inet", TABLE, rule.chain,
                         "handle", str(rule.handle))  # fmt: skip

    def heal_all(self) -> None:
        """Remove every rule of every host."""
        for host in self.hosts.values():
            for chain in ("input", "output"):
                self._in(host.netns, "nft", "flush", "chain", "inet", TABLE, chain)
        self.rules.clear()

    def counters(self, host: str) -> str:
        """The host's nft table as ``nft list`` prints it (for a failure message)."""
        return self._in(self.hosts[host].netns, "nft", "list", "table", "inet", TABLE)


def _free_subnet() -> int:
    """A third octet S for 10.77.S.0/24 that no address or route of this machine uses."""
    used = _run(["ip", "-4", "route", "show", "table", "all"], check=False)
    used += _run(["ip", "-4", "addr"], check=False)
    start = os.getpid() % 200
    for offset in range(250):
        subnet = 1 + (start + offset) % 250
        if f"10.77.{subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.77.S.0/24 subnet for the test hosts")
