"""One indexing run, in three parts that each own one piece of state:

- planner.py decides what each file needs: nothing, a copy of a row already made, or
  the model;
- writer.py buffers rows and commits them, and owns when to commit and compact;
- run.py walks the folders and moves files between the two and the embedding workers.
"""

from photon_index.ingest.run import Failure, IndexReport, Ingest, Interrupted, check_roots

__all__ = ["Failure", "IndexReport", "Ingest", "Interrupted", "check_roots"]
