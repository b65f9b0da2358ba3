import os
import sys
from pathlib import Path

import pytest
from corpus import make_bad_corpus

from photon_index.discover import IMAGE_SUFFIXES, FoundFile, WalkError, discover, display
from photon_index.errors import UsageError

needs_posix_names = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="file system refuses non-UTF-8 names"
)


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def found(items) -> list[str]:
    """Paths of the FoundFiles, relative to their root, in walk order; no WalkErrors."""
    items = list(items)
    assert not [i for i in items if isinstance(i, WalkError)]
    return [i.path.relative_to(i.root).as_posix() for i in items]


def test_walks_recursively_in_name_order(tmp_path):
    touch(tmp_path, "b.jpg", "a/2.png", "a/1.JPG", "c.txt", "a/sub/x.webp", "d.jpeg", "e.TIFF")
    expected = ["a/1.JPG", "a/2.png", "a/sub/x.webp", "b.jpg", "d.jpeg", "e.TIFF"]
    assert found(discover([tmp_path])) == expected


def test_records_are_absolute_with_size_and_mtime(tmp_path, monkeypatch):
    (tmp_path / "p.gif").write_bytes(b"12345")
    monkeypatch.chdir(tmp_path)
    [item] = discover([Path(".")])
    st = (tmp_path / "p.gif").stat()
    assert item == FoundFile(tmp_path / "p.gif", tmp_path, 5, st.st_mtime_ns)


def test_paths_stay_as_reached_not_resolved(tmp_path):
    touch(tmp_path, "real/p.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    [item] = discover([tmp_path / "alias"])
    assert item.path == tmp_path / "alias" / "p.jpg"
    assert item.root == tmp_path / "alias"


def test_is_lazy(tmp_path, monkeypatch):
    touch(tmp_path, "a/1.jpg", "b/2.jpg", "c/3.jpg")
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or scandir(path))
    walk = discover([tmp_path])
    assert listed == []
    next(walk)
    assert listed == [tmp_path, tmp_path / "a"]


def test_hidden_entries_skipped_unless_asked_for(tmp_path):
    touch(tmp_path, ".hidden.jpg", ".cache/in.jpg", "shown.jpg")
    assert found(discover([tmp_path])) == ["shown.jpg"]
    assert found(discover([tmp_path], include_hidden=True)) == [
        ".cache/in.jpg",
        ".hidden.jpg",
        "shown.jpg",
    ]


def test_hidden_root_is_walked(tmp_path):
    touch(tmp_path, ".photos/p.jpg")
    assert found(discover([tmp_path / ".photos"])) == ["p.jpg"]


@pytest.mark.parametrize(
    ("pattern", "left"),
    [
        ("*.png", ["Thumbs.jpg", "raw/a.jpg", "top.jpg"]),
        ("raw/*", ["Thumbs.jpg", "top.jpg", "x.png"]),
        ("raw", ["Thumbs.jpg", "top.jpg", "x.png"]),
        ("Thumbs*", ["raw/a.jpg", "raw/b.png", "top.jpg", "x.png"]),
        ("a.jpg", ["Thumbs.jpg", "raw/b.png", "top.jpg", "x.png"]),
    ],
)
def test_exclude_matches_relative_path_or_name(tmp_path, pattern, left):
    touch(tmp_path, "top.jpg", "x.png", "Thumbs.jpg", "raw/a.jpg", "raw/b.png")
    assert found(discover([tmp_path], exclude=[pattern])) == left


def test_symlink_loop_ends_and_yields_each_file_once(tmp_path):
    touch(tmp_path, "a/p.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a")
    assert found(discover([tmp_path])) == ["a/p.jpg"]


def test_two_links_to_one_folder_yield_its_files_once(tmp_path):
    touch(tmp_path, "real/p.jpg")
    (tmp_path / "link1").symlink_to(tmp_path / "real")
    (tmp_path / "link2").symlink_to(tmp_path / "real")
    assert found(discover([tmp_path])) == ["real/p.jpg"]  # the real path, not a link to it


def test_a_link_sorting_first_never_takes_the_real_files_place(tmp_path):
    touch(tmp_path, "z/real.jpg", "z/folder/q.jpg")
    (tmp_path / "a_links").mkdir()
    (tmp_path / "a_links" / "link.jpg").symlink_to(tmp_path / "z" / "real.jpg")
    (tmp_path / "a_links" / "folder").symlink_to(tmp_path / "z" / "folder")
    assert found(discover([tmp_path])) == ["z/folder/q.jpg", "z/real.jpg"]
    # A link out of the roots is followed: its target is found nowhere else.
    assert found(discover([tmp_path / "a_links"])) == ["folder/q.jpg", "link.jpg"]


def test_hardlinks_and_file_symlinks_yield_once(tmp_path):
    touch(tmp_path, "a.jpg")
    os.link(tmp_path / "a.jpg", tmp_path / "b.jpg")
    (tmp_path / "c.jpg").symlink_to(tmp_path / "a.jpg")
    assert found(discover([tmp_path])) == ["a.jpg"]


def test_overlapping_roots_yield_each_file_once(tmp_path):
    touch(tmp_path, "p.jpg", "sub/q.jpg")
    items = list(discover([tmp_path, tmp_path / "sub", tmp_path / "sub" / "q.jpg"]))
    assert [i.path for i in items] == [tmp_path / "p.jpg", tmp_path / "sub" / "q.jpg"]


def test_file_root_is_yielded_if_it_is_an_image(tmp_path):
    touch(tmp_path, "p.PNG", "notes.txt")
    [item] = discover([tmp_path / "p.PNG", tmp_path / "notes.txt"])
    assert item.path == item.root == tmp_path / "p.PNG"


def test_missing_root_is_a_usage_error_at_once(tmp_path):
    with pytest.raises(UsageError, match="nope"):
        discover([tmp_path, tmp_path / "nope"])  # not iterated: raised at the call


def test_broken_symlink_is_a_walk_error(tmp_path):
    touch(tmp_path, "ok.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "gone_folder").symlink_to(tmp_path / "missing")
    items = list(discover([tmp_path]))
    assert [type(i) for i in items] == [WalkError, WalkError, FoundFile]
    assert items[0].path == tmp_path / "gone.jpg"
    assert "broken symbolic link" in items[0].reason


def test_unreadable_folder_is_a_walk_error_and_the_walk_goes_on(tmp_path, monkeypatch):
    # chmod can't stop root, so the refusal is simulated; the next test uses chmod.
    touch(tmp_path, "a/p.jpg", "b/q.jpg")
    scandir = os.scandir

    def refusing(path):
        if Path(path).name == "a":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    error, item = discover([tmp_path])
    assert error == WalkError(tmp_path / "a", "cannot read folder: Permission denied")
    assert item.path == tmp_path / "b" / "q.jpg"


def test_chmod_000_folder_is_a_walk_error(tmp_path):
    touch(tmp_path, "a/p.jpg", "b/q.jpg")
    (tmp_path / "a").chmod(0)
    try:
        if os.access(tmp_path / "a", os.R_OK):
            pytest.skip("chmod 000 does not stop reading here (running as root?)")
        items = list(discover([tmp_path]))
    finally:
        (tmp_path / "a").chmod(0o755)
    assert [type(i) for i in items] == [WalkError, FoundFile]


@needs_posix_names
def test_non_utf8_names_are_walk_errors(tmp_path):
    touch(tmp_path, "ok.jpg", "bad_dir_name_follows/x.jpg")
    root = os.fsencode(tmp_path)
    with open(root + b"/caf\xe9.jpg", "wb") as f:
        f.write(b"x")
    os.mkdir(root + b"/d\xe9j\xe0")
    with open(root + b"/d\xe9j\xe0/in.jpg", "wb") as f:
        f.write(b"x")
    items = list(discover([tmp_path]))
    errors = [i for i in items if isinstance(i, WalkError)]
    assert [display(e.path) for e in errors] == [
        f"{tmp_path}/caf\\xe9.jpg",
        f"{tmp_path}/d\\xe9j\\xe0",
    ]
    assert all("not valid UTF-8; rename it" in e.reason for e in errors)
    assert {i.path.name for i in items if isinstance(i, FoundFile)} == {"ok.jpg", "x.jpg"}
    with pytest.raises(UsageError, match="not valid UTF-8"):
        discover([Path(os.fsdecode(root + b"/d\xe9j\xe0"))])


def test_display_is_printable_text(tmp_path):
    assert display(tmp_path / "café.jpg") == f"{tmp_path}/café.jpg"
    display(Path(os.fsdecode(b"/caf\xe9.jpg"))).encode("utf-8")  # no UnicodeEncodeError


def test_image_suffixes_are_lowercase_and_cover_the_common_formats():
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
    # Found without their extras too: the indexer says what to install (test_formats.py).
    assert {".heic", ".heif", ".avif", ".dng", ".cr3", ".nef", ".mp4", ".mov"} <= IMAGE_SUFFIXES


def test_bad_corpus_walk_failures_are_exactly_the_walk_errors(tmp_path):
    corpus = make_bad_corpus(tmp_path)
    items = list(discover([tmp_path]))
    names = {path: name for name, path in corpus.paths.items()}
    errors = {names[i.path] for i in items if isinstance(i, WalkError)}
    files = {names[i.path] for i in items if isinstance(i, FoundFile)}
    assert errors == corpus.walk_failures
    assert files == corpus.decode_failures | corpus.decodable
