"""What `photon dedupe` does to files: move, trash or delete duplicates (apply), with a
write-ahead journal (journal) that lets an interrupted batch be finished (recover) and
the last batch be put back (undo). Finding the duplicates is photon_index.query.dedupe."""

from photon_index.actions.apply import Action, ActionReport, Interrupted, act
from photon_index.actions.journal import Journal
from photon_index.actions.recover import finish_interrupted
from photon_index.actions.undo import UndoReport, undo_last

__all__ = [
    "Action",
    "ActionReport",
    "Interrupted",
    "Journal",
    "UndoReport",
    "act",
    "finish_interrupted",
    "undo_last",
]
