"""The workspace sandbox: escapes, fake and hostile images, atomic writes, fresh names."""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import tools.workspace
from tools.workspace import Workspace, WorkspaceError

NAME = re.compile(r"^image/[a-z]{8}\.png$")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


def test_save_then_load_round_trips_under_fresh_names(ws, picture):
    names = [ws.save_image(picture) for _ in range(20)]
    assert all(NAME.match(n) for n in names)
    assert len(set(names)) == 20
    np.testing.assert_array_equal(ws.load_image(names[0]), picture)
    assert not [p for p in (ws.root / "image").iterdir() if p.name.startswith(".")], "no staging file left"


def test_new_output_path_is_unused_and_inside(ws):
    relative, path = ws.new_output_path(".json", folder="cache")
    assert re.fullmatch(r"cache/[a-z]{8}\.json", relative)
    assert path == ws.root / relative and not path.exists()
    relative, _ = ws.new_output_path(folder=str(ws.root / "image"))
    assert NAME.match(relative), "an absolute folder inside the workspace still gives a relative name"


def test_fresh_temporary_workspace():
    root = Workspace().root
    assert root.is_dir() and not any(root.iterdir())
    root.rmdir()


@pytest.mark.parametrize("path", ["../x.png", "image/../../x.png", "/etc/passwd"])
def test_paths_outside_are_refused(ws, path):
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        ws.load_image(path)


def test_absolute_path_to_an_existing_image_outside_is_refused(ws, tmp_path, picture):
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), picture)
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        ws.load_image(str(outside))


def test_symlink_pointing_outside_is_refused(ws, tmp_path, picture):
    outside = tmp_path / "secret.png"
    cv2.imwrite(str(outside), picture)
    (ws.root / "image").mkdir()
    (ws.root / "image" / "link.png").symlink_to(outside)
    with pytest.raises(WorkspaceError, match="link to a file outside"):
        ws.load_image("image/link.png")


def test_symlink_inside_is_followed(ws, picture):
    name = ws.save_image(picture)
    (ws.root / "alias.png").symlink_to(ws.root / name)
    np.testing.assert_array_equal(ws.load_image("alias.png"), picture)


def test_missing_file_says_so(ws):
    with pytest.raises(WorkspaceError, match="no file 'image/nothere.png'"):
        ws.resolve("image/nothere.png")


def test_text_renamed_png_is_not_an_image(ws):
    (ws.root / "fake.png").write_text("just some text, not a picture\n")
    with pytest.raises(WorkspaceError, match="not a readable image"):
        ws.load_image("fake.png")


def test_truncated_png_is_refused(ws, picture):
    data = cv2.imencode(".png", picture)[1].tobytes()
    (ws.root / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkspaceError, match="not a readable image|damaged"):
        ws.load_image("cut.png")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (8_000, 6_000)])
def test_decompression_bomb_is_refused_before_decoding(ws, width, height):
    (ws.root / "bomb.png").write_bytes(png_header(width, height))
    with pytest.raises(WorkspaceError, match="pixels"):
        ws.load_image("bomb.png")


def test_oversized_file_is_refused(tmp_path, picture):
    ws = Workspace(tmp_path / "ws", max_bytes=1_000)
    (ws.root / "big.png").write_bytes(cv2.imencode(".png", picture)[1].tobytes())  # noise: ~7 kB
    with pytest.raises(WorkspaceError, match="at most 1,000 bytes"):
        ws.load_image("big.png")


def test_refused_writes_leave_the_workspace_unchanged(ws, tmp_path, picture):
    ws.save_image(picture)
    before = snapshot(ws.root)
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (ws.root / "escape").symlink_to(outside_dir)
    for image, folder in [
        (picture, "../out"),
        (picture, str(outside_dir)),
        (picture, "escape"),
        (picture.astype(np.float32), "image"),
        (np.zeros((0, 0), np.uint8), "image"),
    ]:
        with pytest.raises(WorkspaceError):
            ws.save_image(image, folder=folder)
    (ws.root / "escape").unlink()
    assert snapshot(ws.root) == before
    assert not any(outside_dir.iterdir()) and not (tmp_path / "out").exists()


def test_interrupted_write_leaves_nothing(ws, picture, monkeypatch):
    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(tools.workspace.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ws.save_image(picture)
    assert snapshot(ws.root) == {}


def test_import_file_validates_and_reencodes(ws, tmp_path, picture):
    upload = tmp_path / "holiday photo.jpg"
    cv2.imwrite(str(upload), picture)
    name = ws.import_file(upload)
    assert NAME.match(name)
    assert ws.load_image(name).shape == picture.shape
    assert upload.exists(), "the upload itself is left alone"


def test_import_refuses_non_images_and_writes_nothing(ws, tmp_path):
    upload = tmp_path / "notes.png"
    upload.write_text("not an image")
    with pytest.raises(WorkspaceError, match="not a readable image"):
        ws.import_file(upload)
    with pytest.raises(WorkspaceError, match="not a file"):
        ws.import_file(tmp_path / "missing.png")
    assert snapshot(ws.root) == {}


def test_import_refuses_bombs(ws, tmp_path):
    upload = tmp_path / "bomb.png"
    upload.write_bytes(png_header(100_000, 100_000))
    with pytest.raises(WorkspaceError, match="pixels"):
        ws.import_file(upload)
    assert snapshot(ws.root) == {}
    assert os.path.getsize(upload) < 200


@pytest.mark.parametrize("name", ["a" * 300 + ".png", "image/" + "b" * 300 + ".png", "c" * 300 + "/x.png"])
def test_over_long_name_is_refused_without_the_server_path(ws, name):
    (ws.root / "image").mkdir()  # so the lookup reaches the long component
    for attempt in (ws.resolve, ws.load_image, lambda n: ws.new_output_path(folder=n)):
        with pytest.raises(WorkspaceError, match="too long") as refused:
            attempt(name)
        assert str(ws.root) not in str(refused.value)
        assert name[:20] in str(refused.value), "it names the path the user gave"


def test_file_in_place_of_a_folder_is_refused_without_the_server_path(ws, picture):
    name = ws.save_image(picture)
    for folder in (name, name + "/sub"):
        with pytest.raises(WorkspaceError, match="where a folder is needed") as refused:
            ws.new_output_path(folder=folder)
        assert str(ws.root) not in str(refused.value)


def test_unreadable_file_is_refused_without_the_server_path(ws, picture, monkeypatch):
    name = ws.save_image(picture)

    def denied(self, *args, **kwargs):  # chmod would not stop a test run as root
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(WorkspaceError, match="permission denied") as refused:
        ws.load_image(name)
    assert str(ws.root) not in str(refused.value) and name in str(refused.value)
