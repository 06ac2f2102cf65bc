"""Tasks that mark their start in a folder, so a test knows what ran (shared by the ending programs).

The driver script's folder is on every rank's ``sys.path``, so workers import this module too.
"""
import os
import time


def mark(comm, directory, i, seconds):
    """Write ``DIRECTORY/started-<i>``, sleep ``seconds``, return ``i``."""
    with open(os.path.join(directory, f"started-{i}"), "w"):
        pass
    time.sleep(seconds)
    return i


def started(directory):
    """How many marked tasks have started."""
    return sum(1 for name in os.listdir(directory) if name.startswith("started-"))


def wait_for_a_start(directory):
    while started(directory) == 0:
        time.sleep(0.02)
