"""Run the Pilot-Quantum paper's figures, reproduced: one JSON and one PNG per figure.

    python benchmarks/figures/run.py                         # every figure, size small (make figures)
    python benchmarks/figures/run.py --figure 3 --figure 5   # some of them
    python benchmarks/figures/run.py --figure 5 --size tiny --out /tmp/fig5
    python benchmarks/figures/run.py --figure 5 --replot     # the PNG again from <out>/fig5.json

For each figure module ``benchmarks/figures/fig<N>_<topic>.py`` (see the package docstring):
``run(size, out_dir)`` measures, the runner writes its data to ``<out>/fig<N>.json`` (strict JSON:
NaN or infinity is refused, with its path) and ``plot`` draws ``<out>/fig<N>.png`` from the data
as read back from that JSON, so a PNG can always be redrawn from its JSON. With several
figures, one that fails does not stop the others; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run from a checkout: the figures import benchmarks.* and pilotq_mpi
    sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from benchmarks.figures import SIZES, data_series, discover, non_finite  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results"


class FigureError(RuntimeError):
    """A figure module broke the convention (no series, non-finite numbers, no PNG ...)."""


def load(number: int, modules: dict[int, str]):
    """Import figure ``number``'s module and check it defines what the runner uses."""
    module = importlib.import_module(modules[number])
    missing = [name for name in ("FIGURE", "TITLE", "PAPER", "run", "plot") if not hasattr(module, name)]
    if missing:
        raise FigureError(f"{module.__name__} does not define {', '.join(missing)} (see benchmarks/figures/__init__.py)")
    if module.FIGURE != number:
        raise FigureError(f"{module.__name__} says FIGURE = {module.FIGURE!r} but its file name says {number}")
    return module


def _write_json(data: dict, path: Path) -> None:
    bad = non_finite(data)
    if bad:
        raise FigureError(f"figure data has non-finite numbers at {', '.join(bad[:5])}"
                          f"{' ...' if len(bad) > 5 else ''}; use None for 'not measured'")
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_from_json(module, json_path: Path, png_path: Path) -> None:
    """Draw ``png_path`` from the data in ``json_path`` with the module's ``plot``."""
    data = json.loads(json_path.read_text())
    module.plot(data, png_path)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise FigureError(f"{module.__name__}.plot did not write {png_path}")


def run_figure(module, size: str, out: Path) -> dict:
    """Run one figure at ``size``, write ``<out>/fig<N>.json`` and ``<out>/fig<N>.png``; return its data."""
    number = module.FIGURE
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"pilotq-fig{number}-") as scratch:
        data = module.run(size, Path(scratch))
    seconds = time.perf_counter() - started
    if not isinstance(data, dict):
        raise FigureError(f"{module.__name__}.run returned {type(data).__name__}, not a dict")
    if not data_series(data):
        raise FigureError(f"{module.__name__}.run returned no data series (no non-empty list of numbers "
                          f"or of records with numbers); keys: {sorted(data)}")
    data.setdefault("figure", number)
    data.setdefault("title", module.TITLE)
    data.setdefault("size", size)
    data["runner"] = {
        "command": " ".join(["python", "benchmarks/figures/run.py", "--figure", str(number), "--size", size]),
        "seconds": round(seconds, 3),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_after": list(os.getloadavg()),
    }
    json_path, png_path = out / f"fig{number}.json", out / f"fig{number}.png"
    _write_json(data, json_path)
    plot_from_json(module, json_path, png_path)
    return data


def parse_args(argv: list[str] | None, available: dict[int, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    listed = ", ".join(str(n) for n in sorted(available)) or "none"
    parser.add_argument("--figure", type=int, action="append", metavar="N",
                        help=f"figure number, repeatable (default: all; available: {listed})")
    parser.add_argument("--size", choices=SIZES, default="small",
                        help="tiny: seconds, every code path (CI); small: a few minutes each (default)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for fig<N>.json and fig<N>.png (default: {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--replot", action="store_true", help="only redraw fig<N>.png from <out>/fig<N>.json")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.figure or ()) - set(available))
    if unknown:
        parser.error(f"unknown figure {', '.join(map(str, unknown))}: the available figures are {listed} "
                     f"(modules benchmarks/figures/fig<N>_<topic>.py)")
    args.figure = sorted(set(args.figure)) if args.figure else sorted(available)
    return args


def main(argv: list[str] | None = None) -> int:
    available = discover()
    args = parse_args(argv, available)
    if not args.figure:
        print("no figure modules in benchmarks/figures/", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for number in args.figure:
        try:
            module = load(number, available)
            if args.replot:
                json_path = args.out / f"fig{number}.json"
                if not json_path.is_file():
                    raise FigureError(f"{json_path} does not exist; run the figure first (without --replot)")
                plot_from_json(module, json_path, args.out / f"fig{number}.png")
                print(f"fig{number}: redrew {args.out / f'fig{number}.png'}", flush=True)
                continue
            print(f"fig{number}: {module.TITLE} (size {args.size}) ...", flush=True)
            data = run_figure(module, args.size, args.out)
            print(f"fig{number}: wrote {args.out / f'fig{number}.json'} and .png "
                  f"in {data['runner']['seconds']:.1f} s", flush=True)
        except Exception as exc:  # one figure failing does not stop the others
            traceback.print_exc()
            print(f"fig{number}: FAILED: {exc}", file=sys.stderr, flush=True)
            failed.append(number)
    if failed:
        print(f"figures failed: {', '.join(map(str, failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
