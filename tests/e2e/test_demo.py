"""The README's first command, `pilotq-mpi demo`, in its quick form: all three motifs agree with exact values."""
import os
import re
import subprocess
import sys

import pytest


@pytest.mark.timeout(400)
def test_demo_quick_runs_all_motifs_and_reports(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pilotq_mpi.cli", "demo", "--quick"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=360, env=dict(os.environ, PILOTQ_PROGRESS="off"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {}
    for line in out.stdout.splitlines():
        match = re.match(r"(state vector|circuit cutting|QPU \(fake_manila\))\s+.*?\s(-?\d+\.\d{4})\s+(-?\d+\.\d{4})\s", line)
        if match:
            rows[match.group(1)] = (float(match.group(2)), float(match.group(3)), line)
    assert set(rows) == {"state vector", "circuit cutting", "QPU (fake_manila)"}, out.stdout
    value, exact, _ = rows["state vector"]
    assert value == exact
    value, exact, line = rows["circuit cutting"]
    sigma = float(re.search(r"± (\d+\.\d+)", line).group(1))
    assert abs(value - exact) <= 4 * sigma + 1e-4, line
    # guided batches: 72 subexperiments over the 6 compute workers, large first
    from pilotq_mpi.workflows.cutting import guided_batch_sizes
    sizes = guided_batch_sizes(72, 6)
    assert f"{len(sizes)} tasks" in line, (sizes, line)
    assert f"cutting batches: {len(sizes)}, sizes {sizes[0]} down to {sizes[-1]}" in out.stdout
    value, exact, _ = rows["QPU (fake_manila)"]
    assert abs(value - exact) < 0.3, "a noisy 4-qubit device still tracks the exact value"
    assert "utilization" in out.stdout and "run_subexperiment_batch" in out.stdout
    # trace and plots in one new folder under pilotq-out/ (git-ignored), and the demo says where
    folder = re.search(r"^demo output \(trace and plots\) in (pilotq-out/demo-[\d-]+)/$", out.stdout, re.M).group(1)
    assert [p.name for p in tmp_path.iterdir()] == ["pilotq-out"]
    assert (tmp_path / folder / "trace.gantt.png").stat().st_size > 10_000
    assert "driver time" in out.stdout and "durations: 'driver time' runs from Pilot()" in out.stdout
