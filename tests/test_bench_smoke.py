"""`bench/run.py --smoke` runs every scenario end to end (tiny numbers, no speed assertions).

The PostgreSQL parts (scenario 5, scenario 6 on PostgreSQL) are skipped by the runner when
PostgreSQL is not reachable on 127.0.0.1:5432; the whole test is skipped without Node/npm
(the load generator is a Node script). Under CI=true neither may be missing (tests/needs.py).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.needs import in_ci, missing
from tests.serverproc import ROOT

SCENARIOS = {"1", "2", "3", "4", "5", "6", "7", "8"}
# About 75 s on an idle 2-core machine (scenario 8 adds about 13 s); a busy machine needs more.
TIMEOUT_SECS = 120  # plus up to 12 s for a clean stop: under 135 s in all


def test_bench_smoke_runs_every_scenario(tmp_path):
    if not (shutil.which("node") and shutil.which("npm")):
        missing("the load generator needs Node.js and npm")
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "bench/run.py", "--smoke", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the runner stops its servers and load generators on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=12)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"bench/run.py --smoke took over {TIMEOUT_SECS}s:\n{stdout[-4000:]}\n{stderr[-2000:]}")
    assert proc.returncode == 0, stdout[-4000:] + stderr[-4000:]

    results = list(out.glob("*.json"))
    assert len(results) == 1, results
    assert results[0].with_suffix(".md").exists()
    data = json.loads(results[0].read_text())
    assert data["smoke"] is True
    assert data["machine"]["nproc"] == os.cpu_count()
    assert set(data["scenarios"]) == SCENARIOS

    ran = 0
    for number, scenario in data["scenarios"].items():
        for target, runs in scenario["runs"].items():
            if target in scenario["skipped"]:
                assert not runs
                continue
            assert runs, f"scenario {number} {target}: no run and no reason to skip ({scenario['errors'][target]})"
            assert not scenario["errors"][target], scenario["errors"][target]
            for run in runs:
                ran += 1
                if number == "4":
                    assert run["connected"] == scenario["params"]["clients"], run
                    assert run["rss_after_kib"] > 0
                else:
                    assert run["acked"] > 0, run
                    assert run["deliveries"] > 0, run
                    assert run["deliveries"] == run["expected_deliveries"], run
                    assert run["out_of_order"] == 0 and run["gaps"] == 0, run
    # Scenarios 1-4, 6 and 8 on SQLite need nothing but Node: ours and the reference ran.
    for number in ("1", "2", "3", "4", "6", "8"):
        assert data["scenarios"][number]["runs"]["ours"], number
        if "reference" not in data["scenarios"][number]["skipped"]:
            assert data["scenarios"][number]["runs"]["reference"], number
    # Scenario 8: ours as accounts made by the runner (token auth), every pair opened its room
    # (ours: open_dm; reference: the same call, a room name) and joined it; each message reached
    # its sender and the other member, and the latency counts only the other member's copies.
    dm = data["scenarios"]["8"]
    pairs = dm["params"]["clients"] // 2
    assert dm["runs"]["ours"][0]["accounts_secs"] > 0
    for target, runs in dm["runs"].items():
        for run in runs:
            assert run["dms_opened"] == pairs and run["joined"] == 2 * pairs, (target, run)
            assert run["ack_errors_total"] == 0, (target, run)
            assert run["own_copies"] == run["acked"] == run["latency_ms"]["n"], (target, run)
            assert run["server_rss_kib"] > 0
    expected_runs = sum(data["rounds"] for scenario in data["scenarios"].values()
                        for target in scenario["runs"] if target not in scenario["skipped"])
    assert ran == expected_runs, (ran, expected_runs)  # every target not skipped ran each round
    if in_ci():  # .ci/run provides PostgreSQL: its scenarios must have run
        assert data["skipped"]["postgres"] is None, data["skipped"]
        assert data["scenarios"]["5"]["runs"]["cluster"] and data["scenarios"]["6"]["runs"]["ours-pg"]
    assert "| scenario | metric | ours | reference | ratio ours/reference |" in stdout
