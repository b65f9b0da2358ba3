"""One indexing run, in parts that each own one piece of state:

- planner.py decides what each file needs: nothing, a copy of a row already made, or
  the model;
- writer.py buffers rows and commits them, and owns when to commit and compact;
- progress.py publishes the run's counts for other processes to read;
- run.py walks the folders and moves files between the planner, the writer and the
  embedding workers.
"""

from photon_index.ingest.progress import Failure, ProgressFile, RunProgress, read_progress
from photon_index.ingest.run import IndexReport, Ingest, Interrupted, check_roots

__all__ = [
    "Failure",
    "IndexReport",
    "Ingest",
    "Interrupted",
    "ProgressFile",
    "RunProgress",
    "check_roots",
    "read_progress",
]
