"""pilotq-mpi: an MPI-native pilot job for hybrid quantum-HPC workloads."""
__version__ = "0.1.0"
