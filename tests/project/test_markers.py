"""The ``postgres`` / ``redis`` markers select exactly the tests that need those servers.

tests/conftest.py adds them at collection from each test's fixtures and parameters; this test
collects real test files in a subprocess with ``-m "not postgres and not redis"`` and checks what
was kept and what was dropped (tests/marker_report.py writes both down).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "tests/gateway/test_server.py"  # database_url is parametrized sqlite / postgresql
SCALEOUT = "tests/gateway/delivery/test_fanout_scaleout.py"  # uses pg_dsn and redis_server, no marker written
PG_AND_REDIS = f"{SCALEOUT}::test_two_nodes_share_the_log_and_broadcasts_cross_nodes"


def test_service_markers_follow_fixtures_and_params_and_m_deselects_them(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    pytest_args = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tests.marker_report"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "-m", "not postgres and not redis", GATEWAY, SCALEOUT],
        cwd=ROOT,
        env={**os.environ, "RXSTORE_MARKER_REPORT": str(report_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    kept, dropped = report["kept"], report["dropped"]

    assert dropped[PG_AND_REDIS] == ["postgres", "redis"]
    redis_only = {i for i in dropped if i.startswith(SCALEOUT)} - {PG_AND_REDIS}
    assert redis_only and all(dropped[i] == ["redis"] for i in redis_only)
    gateway_pg = {i for i in dropped if i.startswith(GATEWAY)}
    assert gateway_pg and all("[postgresql" in i and dropped[i] == ["postgres"] for i in gateway_pg)

    assert kept, "nothing left without the services"
    assert all(i.startswith(GATEWAY) and "[postgresql" not in i for i in kept), kept
    assert all(markers == [] for markers in kept.values())
    sqlite_twins = {i.replace("[sqlite", "[postgresql") for i in kept if "[sqlite" in i}
    assert sqlite_twins and sqlite_twins <= gateway_pg
