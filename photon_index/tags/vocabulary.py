"""Tag vocabularies: which tags a picture can get, the names that mean each one, the
prompts they are written into, and thresholds the user set by hand.

A vocabulary file has one tag a line: its name, then any synonyms, comma-separated,
then optionally `@ PROBABILITY`, a threshold of its own instead of the library's rule:

    # comments and blank lines are ignored
    template: a photo of {}.
    beach, seaside, seashore
    receipt, till receipt @ 0.05

`template:` lines give the prompts every name is written into (default: TEMPLATES). A
name that appears on two lines (a synonym of one tag and the name of another) merges
them into the first, so one concept is one tag."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from photon_index.embed.tokenize import canonicalize
from photon_index.errors import ConfigError

# Prompt ensembling as in CLIP/SigLIP zero-shot classification: each name in a few
# phrasings, the text embeddings averaged, so no one phrasing's quirks decide.
TEMPLATES = ("a photo of {}.", "{}", "a picture of {}.", "a close-up photo of {}.")
VOCABULARY_FILE = "vocabulary.txt"  # a model's own, beside its files


@dataclass(frozen=True)
class Tag:
    name: str
    synonyms: tuple[str, ...] = ()
    threshold: float | None = None  # a probability, set by hand; None: the library's rule

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class Vocabulary:
    tags: tuple[Tag, ...]
    templates: tuple[str, ...]
    source: str  # the file it came from, for messages

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tags]

    def key(self) -> str:
        """A hash of what the text embeddings depend on: names and templates (not the
        thresholds, which don't change them)."""
        text = "\n".join(["\t".join(self.templates), *("\t".join(t.names) for t in self.tags)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def find(self, name: str) -> Tag | None:
        """The tag this name or synonym means, whatever its case and punctuation."""
        wanted = canonicalize(name)
        return next((t for t in self.tags if wanted in map(canonicalize, t.names)), None)

    def prompts(self, tag: Tag) -> list[str]:
        return [template.replace("{}", name) for name in tag.names for template in self.templates]


def parse_vocabulary(text: str, source: str) -> Vocabulary:
    templates: list[str] = []
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line.lower().startswith("template:"):
            template = line.split(":", 1)[1].strip()
            if "{}" not in template:
                raise ConfigError(f"{source}:{number}: a template needs {{}} for the tag's name")
            templates.append(template)
        elif line:
            lines.append((number, line))
    tags: list[Tag] = []
    for number, line in lines:
        tags = _merged(tags, _tag(line, f"{source}:{number}"))
    if not tags:
        raise ConfigError(f"{source} holds no tags")
    return Vocabulary(tuple(tags), tuple(templates) or TEMPLATES, source)


def _tag(line: str, where: str) -> Tag:
    names_part, _, threshold_part = line.partition("@")
    names = [n.strip() for n in names_part.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{where}: a tag line needs a name before '@'")
    threshold = None
    if threshold_part.strip():
        threshold = _probability(threshold_part.strip(), where)
    return Tag(names[0], tuple(dict.fromkeys(names[1:])), threshold)


def _probability(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: the threshold {text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{where}: the threshold {text} must be a probability between 0 and 1")
    return value


def _merged(tags: list[Tag], new: Tag) -> list[Tag]:
    """tags with new added, or merged into the first tag that shares a name with it."""
    wanted = {canonicalize(n) for n in new.names}
    for i, tag in enumerate(tags):
        if wanted & {canonicalize(n) for n in tag.names}:
            extra = [n for n in new.names if canonicalize(n) not in map(canonicalize, tag.names)]
            threshold = tag.threshold if tag.threshold is not None else new.threshold
            tags[i] = replace(tag, synonyms=(*tag.synonyms, *extra), threshold=threshold)
            return tags
    return [*tags, new]


def load_vocabulary(
    model_dir: Path,
    user_file: str = "",
    add: Sequence[str] = (),
    thresholds: Mapping[str, float] | None = None,
) -> Vocabulary:
    """The user's file if set, else the model's own, else photon's default English one;
    then the config's extra tags and per-tag thresholds."""
    if user_file:
        path = Path(user_file).expanduser()
        try:
            text, source = path.read_text("utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the tag vocabulary {path}: {e}") from e
    elif (model_dir / VOCABULARY_FILE).is_file():
        path = model_dir / VOCABULARY_FILE
        text, source = path.read_text("utf-8"), str(path)
    else:
        default = resources.files("photon_index") / "tags" / VOCABULARY_FILE
        text, source = default.read_text("utf-8"), "photon's default vocabulary"
    vocabulary = parse_vocabulary("\n".join([text, *add]), source)
    tags = list(vocabulary.tags)
    for name, probability in (thresholds or {}).items():
        tag = vocabulary.find(name)
        if tag is None:
            raise ConfigError(f"tags.thresholds names {name!r}, which is not in {source}")
        checked = _probability(str(probability), f"tags.thresholds.{name}")
        tags = [replace(t, threshold=checked) if t is tag else t for t in tags]
    return replace(vocabulary, tags=tuple(tags))
