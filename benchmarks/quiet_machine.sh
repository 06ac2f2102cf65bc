#!/usr/bin/env bash
# The runtime benchmarks (no quantum packages needed) on a quiet multi-core machine, results into DIR:
#     bash benchmarks/quiet_machine.sh DIR
# throughput (pilot vs mpi4py.futures at 4/8/16 ranks), the master's CPU per task with one master and
# under two sub-masters, and the costs a user feels (idle CPU, PSS, start-up at 8/32 ranks). Each part
# has its own time limit, so one that hangs loses only itself. The build machine (2 shared cores) gives
# noisy figures; this is how the same commands were run on a lent 16-core machine.
set -u
out=${1:?usage: quiet_machine.sh DIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
run() {  # run LIMIT NAME COMMAND...
    local limit=$1 name=$2; shift 2
    echo "=== $name: $*"
    timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
    echo "=== $name: exit $? ($(tail -n 1 "$out/$name.log"))"
}
run 150 throughput "$py" "$here/throughput.py" --ranks 4 8 16 --repeats 3 --out "$out/throughput.json"
run 100 master_cost "$py" "$here/master_cost.py" --workloads submit --ranks 8 16 --repeats 2 --plain-only \
    --out "$out/master_cost.json"
run 80 master_cost_hier "$py" "$here/master_cost.py" --workloads submit --ranks 10 16 --repeats 2 --plain-only \
    --submasters 2 --out "$out/master_cost.json"
run 90 costs "$py" "$here/costs.py" --out "$out/costs.json"
