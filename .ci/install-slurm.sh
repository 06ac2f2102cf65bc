#!/usr/bin/env bash
# Install the Slurm packages that tests/e2e/slurm_cluster.py needs (Debian/Ubuntu).
#
# Idempotent: does nothing when every binary is already on PATH. Needs root (or sudo).
# Installs: slurmctld, slurmd, the client tools (sbatch, srun, squeue, scontrol, scancel),
# munge (not used by the test cluster, which runs with auth/none, but a Slurm dependency)
# and tini (a subreaper for slurmd, so finished job steps are reaped at once).
set -euo pipefail

needed=(slurmctld slurmd sbatch srun squeue scontrol scancel tini)
missing=()
for bin in "${needed[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: already installed ($(slurmctld -V))"
    exit 0
fi
echo "install-slurm: missing ${missing[*]}; installing"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client munge tini
echo "install-slurm: installed ($(slurmctld -V))"
