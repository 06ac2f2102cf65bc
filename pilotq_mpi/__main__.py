"""``python -m pilotq_mpi app.py``: run ``app.py`` as the driver of a pilot job (see runtime.bootstrap)."""
import sys

from .runtime.bootstrap import main

sys.exit(main())
