"""Duplicate groups as the web app shows them and acts on them. A group is named by a
key that holds across page loads (its tier and suggested keeper), and a person may
pick another keeper; an action is always on groups the index finds now, so a stale
page or a made-up request can never move a picture that is not a duplicate. Similar
pictures (the same scene, not copies) move or go to the trash only when asked for in
so many words, as the CLI's --delete-similar."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from photon_index.errors import UsageError
from photon_index.query.search import printable
from photon_index.store.schema import image_id

if TYPE_CHECKING:
    from photon_index.index import Index
    from photon_index.query.dedupe import DuplicateGroup

ACTIONS = ("move", "trash", "dismiss", "undo")


def group_key(group: DuplicateGroup) -> str:
    return f"{group.tier}-{image_id(group.keep)}"


def is_similar(key: str) -> bool:
    """Whether a group key names a group of similar pictures, not copies."""
    return key.startswith("similar-")


@dataclass(frozen=True)
class Member:
    id: str
    path: str
    record: Any  # the index's ImageRecord; None when the picture left the index since
    keeper: bool
    why: str = ""  # a duplicate's evidence, for a person (evidence_text)


@dataclass(frozen=True)
class GroupView:
    key: str
    group: DuplicateGroup
    members: list[Member]  # the suggested keeper first


def views(index: Index, groups: Sequence[DuplicateGroup]) -> list[GroupView]:
    shown = []
    for group in groups:
        paths = [group.keep, *group.duplicates]
        members = [
            Member(
                image_id(p),
                p,
                index.image(image_id(p)),
                p == group.keep,
                evidence_text(group.evidence.get(p, {})),
            )
            for p in paths
        ]
        shown.append(GroupView(group_key(group), group, members))
    return shown


def evidence_text(evidence: dict[str, Any]) -> str:
    """What made a picture a duplicate of its keeper, in a few words: the signals the
    query kept (query/dedupe.py), the closest of each kind."""
    if "content_hash" in evidence:
        return "the same bytes"
    phashes = [evidence.get(k) for k in ("phash", "phash_trimmed")]
    dhashes = [evidence.get(k) for k in ("dhash", "dhash_whole")]
    parts = []
    for name, values in (("pHash", phashes), ("dHash", dhashes)):
        known = [v for v in values if v is not None]
        if known:
            parts.append(f"{name} {min(known)} of 64 bits apart")
    if evidence.get("cosine") is not None:
        parts.append(f"cosine {evidence['cosine']:.3f}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Choice:
    key: str  # group_key of a group the index finds now
    keep: str | None = None  # image id of the keeper picked; None: the suggested one
    # Image ids of the group's pictures as the person saw them; None: not checked. A
    # group keeps its key when pictures join it, which must not send them away unseen.
    members: frozenset[str] | None = None


def chosen(index: Index, choices: Sequence[Choice]) -> list[DuplicateGroup]:
    """The groups the choices name, each with its picked keeper. A key the index does not
    find now (acted on, dismissed, files changed) is a UsageError: reload and look again.
    So is a key given twice: with two keepers, each would go as the other's copy."""
    if not choices:
        raise UsageError("no duplicate group chosen")
    keys = [c.key for c in choices]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise UsageError(f"the duplicate group {printable(twice)} is chosen twice: choose it once")
    found = {group_key(g): g for g in index.dedupe(similar=any(map(is_similar, keys)))}
    groups = []
    for choice in choices:
        group = found.get(choice.key)
        if group is None:
            raise UsageError(
                f"the duplicate group {printable(choice.key)} is not in the index any more "
                "(acted on, marked as not duplicates, or its files changed): reload the page"
            )
        now = {image_id(p) for p in (group.keep, *group.duplicates)}
        if choice.members is not None and now != choice.members:
            raise UsageError(
                f"the duplicate group {printable(choice.key)} has changed since it was shown "
                "(pictures joined or left it): reload the page"
            )
        if choice.keep and choice.keep != image_id(group.keep):
            members = {image_id(p): p for p in group.duplicates}
            if choice.keep not in members:
                raise UsageError(
                    f"picture {printable(choice.keep)} is not one of the duplicate group "
                    f"{choice.key}"
                )
            group = group.with_keeper(members[choice.keep])
        groups.append(group)
    return groups


def act(
    index: Index,
    action: str,
    choices: Sequence[Choice],
    *,
    similar: bool = False,
    destination: str = "",
) -> Any:
    """Do action ("move", "trash", "dismiss" or "undo") on the chosen groups; returns the
    library's report (ActionReport, UndoReport, or the list of dismissed groups).
    similar: the person asked to move or trash groups of similar pictures too."""
    if action not in ACTIONS:
        raise UsageError(f"action must be one of {', '.join(ACTIONS)}, not {printable(action)!r}")
    if action == "undo":
        return index.undo()
    folder = destination.strip()
    # The server's working folder means nothing to the person at the browser.
    if action == "move" and not (folder.startswith("~") or os.path.isabs(folder)):
        raise UsageError("say which folder to move the copies to, as a full path")
    groups = chosen(index, choices)
    if action in ("move", "trash") and not similar:
        scene = next((group_key(g) for g in groups if g.tier == "similar"), None)
        if scene is not None:
            raise UsageError(
                f"the group {scene} holds similar pictures, not copies: ask for them "
                "explicitly (similar) to move or trash them"
            )
    if action == "move":
        return index.move_duplicates(groups, folder)
    if action == "trash":
        return index.trash_duplicates(groups, similar=similar)
    for group in groups:
        index.dismiss_duplicates(group)
    return groups


@dataclass(frozen=True)
class Outcome:
    """What an action did, as the duplicates page tells it."""

    action: str
    done: list[str]  # a line per file: "from -> to", or the path
    failed: list[tuple[str, str]]  # (path, why it was left alone)
    batch: str | None = None  # the journal batch the undo button puts back
    error: str = ""  # the action was refused as a whole
    destination: str = ""  # of a move: offered again

    @classmethod
    def failure(cls, action: str, error: str, destination: str = "") -> Outcome:
        return cls(action, [], [], error=error, destination=destination)

    @property
    def undoable(self) -> bool:
        return self.action in ("move", "trash") and bool(self.done)


def outcome(action: str, report: Any, destination: str = "") -> Outcome:
    if action == "dismiss":
        return Outcome(action, [f"{g.keep} and {len(g.duplicates)} more" for g in report], [])
    if action == "undo":
        restored = [f"{origin} -> {back}" for origin, back in report.restored]
        return Outcome(action, restored, report.failed, report.batch)
    done = [f"{origin} -> {to}" for origin, to in report.moved] + list(report.trashed)
    return Outcome(action, done, report.failed, report.batch, destination=destination)
