"""Every figure of the paper reproduced (benchmarks/figures/fig<N>_*.py) runs at size tiny through
the runner, and writes its data (finite numbers) and a PNG. No timing assertions: the figures'
numbers are measurements, checked only for being there."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.figures import data_series, discover  # noqa: E402

RUNNER = REPO / "benchmarks" / "figures" / "run.py"
FIGURES = discover()
#: hard limit per figure at size tiny (the convention asks for well under 60 s on 2 busy cores)
TINY_LIMIT_S = 240


def _runner(*args, timeout=TINY_LIMIT_S):
    env = dict(os.environ, PILOTQ_PROGRESS="off", PILOTQ_QUIET="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(RUNNER), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_every_figure_of_the_paper_has_its_module():
    assert set(FIGURES) == {3, 4, 5, 6, 7}, f"figure modules found: {FIGURES}"


@pytest.mark.timeout(TINY_LIMIT_S + 30)
@pytest.mark.parametrize("number", sorted(FIGURES))
def test_figure_runs_tiny_and_writes_json_and_png(number, tmp_path):
    out = _runner("--figure", str(number), "--size", "tiny", "--out", str(tmp_path))
    assert out.returncode == 0, f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-5000:]}"
    data = json.loads((tmp_path / f"fig{number}.json").read_text())
    assert data["figure"] == number and data["size"] == "tiny"
    assert data["command"] and len(data["loadavg"]) == 3, "run() records its command and os.getloadavg()"
    series = data_series(data)
    assert series, f"fig{number}.json holds no data series: {sorted(data)}"
    numbers = []
    for path, values in series.items():
        for value in values:
            numbers.extend(value.values() if isinstance(value, dict) else [value])
    numbers = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers and all(math.isfinite(v) for v in numbers), series
    png = tmp_path / f"fig{number}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fig{number}.json", f"fig{number}.png"]


def test_unknown_figure_is_refused_with_the_available_ones(tmp_path):
    out = _runner("--figure", "99", "--out", str(tmp_path), timeout=60)
    assert out.returncode == 2
    listed = ", ".join(str(n) for n in sorted(FIGURES))
    assert f"unknown figure 99: the available figures are {listed}" in out.stderr
    assert not list(tmp_path.iterdir()), "nothing is run or written for a bad request"
