"""One script for a GPU machine: versions, the GPU tests, and a state-vector benchmark GPU vs numpy.

Parts, each in a subprocess under its own timeout (a hang loses that part only), within an
overall ``--budget`` of seconds; the JSON is rewritten after every part:

1. facts: Python, numpy, CuPy, CUDA, GPU name and memory, mpi4py and the MPI library, whether
   MPI is CUDA-aware (``PILOTQ_CUDA_AWARE_MPI`` or ``MPI.Query_cuda_support()``);
2. ``pytest tests/gpu`` on one process, then ``tests/gpu/test_gpu_mpi.py`` under
   ``mpiexec -n 2`` and ``-n 4`` (ranks share the GPU; host staging unless MPI is CUDA-aware);
3. benchmark: the hardware-efficient ansatz of ``benchmarks/statevector.py`` (StronglyEntangling
   layers, built without Qiskit by ``benchmarks/gpu_circuits.py``), fused to 4-qubit blocks, on one
   process: the CuPy backend for 20..32 qubits (and 33 in complex64), numpy with all cores and with one core for the sizes
   that fit the time. Each size: one warm-up run (CuPy compiles its kernels), then timed runs.
   Reported: seconds per run (median), per layer, gates/s (circuit gates), fused blocks/s and
   seconds per amplitude per fused block (``amp_gate_s``, the planner profile's unit); the GPU
   state at the smallest size is compared with numpy's.

Writes ``benchmarks/results/statevector_gpu.json`` (and ``$OUT/statevector_gpu.json`` plus the
subprocess log ``$OUT/gpu_check.log`` when ``OUT`` is set). ``mpiexec``: ``$MPIEXEC`` or the one on
``PATH``.

    python benchmarks/gpu_check.py                 # everything, about 6 minutes on an H200
    python benchmarks/gpu_check.py --skip-tests --gpu-qubits 20 24 --cpu-qubits 20
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAYERS = 2


# ---------------------------------------------------------------------------- worker side
def worker(spec: dict) -> dict:
    """Inside a subprocess: time the SEL circuit on one backend; return one result row."""
    import numpy as np
    from mpi4py import MPI

    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_circuits import sel_gates
    from pilotq_mpi.statevector import DistributedStatevector, fuse_gates
    from pilotq_mpi.statevector.backends import get_backend

    n, dtype = spec["qubits"], spec["dtype"]
    gates = sel_gates(n, LAYERS)
    fused = fuse_gates(gates, 4)
    backend = get_backend(spec["backend"])
    warm = 1 if spec["backend"] != "numpy" else 0  # CuPy compiles its kernels on first use
    times = []
    for i in range(warm + spec["repeats"]):
        t0 = time.perf_counter()
        sv = DistributedStatevector(n, MPI.COMM_SELF, dtype=dtype, backend=backend)
        t1 = time.perf_counter()
        sv.run(fused)  # ends with a device synchronize
        times.append((t1 - t0, time.perf_counter() - t1))
        if i < warm + spec["repeats"] - 1:
            del sv
    timed = times[warm:]
    run_s = statistics.median(t for _, t in timed)
    row = {
        "backend": spec["backend"], "engine": getattr(backend, "engine", spec["backend"]),
        "threads": spec.get("threads"), "qubits": n, "dtype": dtype, "layers": LAYERS,
        "gates": len(gates), "fused_gates": len(fused), "repeats": spec["repeats"],
        "run_s": run_s, "s_per_layer": run_s / LAYERS, "gates_per_s": len(gates) / run_s,
        "fused_gates_per_s": len(fused) / run_s, "amp_gate_s": run_s / (len(fused) << n), "warmup_run_s": times[0][1] if warm else None,
        "alloc_s": statistics.median(a for a, _ in timed), "all_run_s": [t for _, t in timed],
        "state_gib": (1 << n) * np.dtype(dtype).itemsize / 2**30, "norm": sv.norm(),
    }
    if spec.get("compare_numpy"):
        ref = DistributedStatevector(n, MPI.COMM_SELF, dtype=dtype, backend="numpy")
        ref.run(fused)
        row["max_abs_diff_vs_numpy"] = float(np.max(np.abs(sv.gather() - ref.gather())))
    if spec["backend"] == "cupy":
        import cupy

        row["gpu_pool_peak_gib"] = cupy.get_default_memory_pool().total_bytes() / 2**30
    return row


# ---------------------------------------------------------------------------- driver side
class Check:
    """Runs the parts, keeps the results, writes them after each part."""

    def __init__(self, args):
        self.args = args
        self.t_start = time.monotonic()
        self.out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
        self.log = open(self.out_dir / "gpu_check.log", "a") if self.out_dir else None  # noqa: SIM115
        self.result = {"script": "benchmarks/gpu_check.py", "argv": sys.argv[1:],
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "complete": False, "facts": {}, "tests": [], "benchmark": [], "skipped": []}

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t_start)

    def say(self, text: str) -> None:
        print(text, flush=True)
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()

    def save(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.t_start, 1)
        self.result["loadavg"] = os.getloadavg()
        text = json.dumps(self.result, indent=1, default=str)
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(text)
        if self.out_dir:
            (self.out_dir / self.args.out.name).write_text(text)

    def run(self, name: str, cmd: list[str], timeout: float, env: dict | None = None) -> dict:
        """Run ``cmd`` in its own process group under ``timeout`` (capped by the budget left)."""
        timeout = min(timeout, self.left() - 5)
        if timeout < 10:
            self.result["skipped"].append({"part": name, "why": "overall budget spent"})
            self.say(f"=== {name}: SKIPPED (budget spent)")
            return {"name": name, "rc": None, "skipped": True}
        self.say(f"=== {name} (timeout {timeout:.0f} s): {' '.join(cmd)}")
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, env=env or dict(os.environ), start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            rc = "timeout"
        seconds = round(time.monotonic() - t0, 1)
        self.say(out[-6000:] if out else "(no output)")
        self.say(f"=== {name}: rc={rc} in {seconds} s")
        return {"name": name, "rc": rc, "seconds": seconds, "tail": (out or "")[-1500:]}

    # ------------------------------------------------------------------ parts
    def facts(self) -> None:
        code = (
            "import json, platform, numpy, mpi4py\n"
            "f = {'python': platform.python_version(), 'numpy': numpy.__version__, 'mpi4py': mpi4py.__version__}\n"
            "try:\n"
            "    import cupy\n"
            "    p = cupy.cuda.runtime.getDeviceProperties(0)\n"
            "    f.update(cupy=cupy.__version__, gpu=p['name'].decode() if isinstance(p['name'], bytes) else p['name'],\n"
            "             gpu_count=cupy.cuda.runtime.getDeviceCount(), gpu_memory_gib=p['totalGlobalMem'] / 2**30,\n"
            "             cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(), cuda_driver=cupy.cuda.runtime.driverGetVersion())\n"
            "except Exception as exc:\n"
            "    f['cupy_error'] = repr(exc)\n"
            "try:\n"
            "    import cuquantum; f['cuquantum'] = cuquantum.__version__\n"
            "except Exception as exc:\n"
            "    f['cuquantum'] = 'absent: ' + type(exc).__name__\n"
            "from mpi4py import MPI\n"
            "f['mpi_library'] = MPI.Get_library_version().strip().splitlines()[0]\n"
            "from pilotq_mpi.statevector.staging import cuda_aware_mpi\n"
            "f['cuda_aware_mpi'] = cuda_aware_mpi()\n"
            "from pilotq_mpi.statevector.backends import get_backend\n"
            "b = get_backend('auto'); f['backend_auto'] = [b.name, getattr(b, 'engine', ''), getattr(b, 'engine_note', '')]\n"
            "print('FACTS ' + json.dumps(f))\n"
        )
        r = self.run("facts", [sys.executable, "-c", code], 90, self._env())
        for line in r.get("tail", "").splitlines():
            if line.startswith("FACTS "):
                self.result["facts"].update(json.loads(line[6:]))
        self.result["facts"].update(host=platform.node(), cpu_count=os.cpu_count(),
                                    mpiexec=self._mpiexec(), python_executable=sys.executable)
        if r.get("rc") != 0:
            self.result["facts"]["facts_error"] = r.get("tail")
        self.save()

    def tests(self) -> None:
        py = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        parts = [("pytest tests/gpu (1 process)", py + ["tests/gpu"], self.args.test_timeout)]
        mpiexec = self._mpiexec()
        for k in (2, 4):
            if mpiexec:
                parts.append((f"mpiexec -n {k} pytest tests/gpu/test_gpu_mpi.py",
                              [mpiexec, "-n", str(k)] + py + ["tests/gpu/test_gpu_mpi.py"],
                              self.args.mpi_test_timeout))
            else:
                self.result["skipped"].append({"part": f"mpi tests -n {k}", "why": "no mpiexec on PATH or $MPIEXEC"})
        for name, cmd, timeout in parts:
            r = self.run(name, cmd, timeout, self._env())
            summary = [ln for ln in r.get("tail", "").splitlines() if " passed" in ln or " failed" in ln
                       or " skipped" in ln or " error" in ln]
            self.result["tests"].append({**r, "summary": summary[-1] if summary else None})
            self.save()

    def benchmark(self) -> None:
        a = self.args
        plan = [("cupy", None, n, "complex128", a.gpu_repeats if n <= 28 else 1) for n in a.gpu_qubits]
        plan += [("cupy", None, n, "complex64", 1) for n in a.gpu_c64_qubits]
        cores = os.cpu_count() or 1
        plan += [("numpy", cores, n, "complex128", 1) for n in a.cpu_qubits]
        plan += [("numpy", 1, n, "complex128", 1) for n in a.cpu1_qubits]
        first_gpu = True
        for backend, threads, n, dtype, repeats in plan:
            spec = {"backend": backend, "threads": threads, "qubits": n, "dtype": dtype, "repeats": repeats,
                    "compare_numpy": backend == "cupy" and first_gpu}
            first_gpu = first_gpu and backend != "cupy"
            env = self._env()
            if threads:
                for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                    env[var] = str(threads)
            name = f"bench {backend} {threads or 'gpu'} n={n} {dtype}"
            r = self.run(name, [sys.executable, __file__, "--worker", json.dumps(spec)], a.bench_timeout, env)
            row = None
            for line in r.get("tail", "").splitlines():
                if line.startswith("ROW "):
                    row = json.loads(line[4:])
            self.result["benchmark"].append(row or {**spec, "failed": r.get("rc"), "tail": r.get("tail")})
            self.save()
            if row:
                self.say(f"    {name}: {row['run_s']:.3f} s/run, {row['s_per_layer']:.3f} s/layer, "
                         f"{row['gates_per_s']:.0f} gates/s")

    def _mpiexec(self) -> str | None:
        return os.environ.get("MPIEXEC") or shutil.which("mpiexec")

    def _env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=360, help="seconds for everything (default 360)")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--test-timeout", type=float, default=120)
    p.add_argument("--mpi-test-timeout", type=float, default=75)
    p.add_argument("--bench-timeout", type=float, default=75, help="seconds per benchmark size")
    p.add_argument("--gpu-qubits", type=int, nargs="*", default=[20, 24, 28, 30, 32])
    p.add_argument("--gpu-c64-qubits", type=int, nargs="*", default=[33],
                   help="complex64 sizes (33 qubits: 64 GiB state + 32 GiB swap buffer)")
    p.add_argument("--gpu-repeats", type=int, default=3, help="timed runs per size up to 28 qubits (1 above)")
    p.add_argument("--cpu-qubits", type=int, nargs="*", default=[20, 24, 26], help="numpy on all cores")
    p.add_argument("--cpu1-qubits", type=int, nargs="*", default=[20, 24], help="numpy on one core")
    p.add_argument("--out", type=Path, default=HERE / "results" / "statevector_gpu.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("ROW " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    check = Check(args)
    check.facts()
    if not args.skip_tests:
        check.tests()
    if not args.skip_bench:
        check.benchmark()
    check.result["complete"] = True
    check.save()
    failed = [t["name"] for t in check.result["tests"] if t.get("rc") not in (0, None)]
    check.say(f"=== done in {check.result['elapsed_s']} s; results in {args.out}"
              + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
