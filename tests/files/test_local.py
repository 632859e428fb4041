"""Files on one node: limits, disk space, images, the clear part bound to the secret one."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from p2ptchap.core.errors import StorageError
from p2ptchap.core.events import EventType
from p2ptchap.core.files import CHUNK_SIZE, Descriptor, clear_reference
from p2ptchap.files import Files, FileSettings
from p2ptchap.rooms import Rooms
from p2ptchap.store.blobs import BlobStore, FileTooLarge, NotEnoughSpace
from tests.test_rooms import World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _files(rooms: Rooms, tmp_path: Path, settings: FileSettings | None = None) -> Files:
    blobs = BlobStore(rooms.db, tmp_path / "blobs", rooms.clock)
    return Files(rooms, blobs, settings or FileSettings())


def _alone_in_a_room(world: World) -> tuple[Rooms, bytes]:
    alice = world.node("alice")
    return alice, alice.create("Salon").room


def test_a_file_is_sealed_in_the_store_and_opens_back_whole(world: World, tmp_path: Path) -> None:
    rooms, room = _alone_in_a_room(world)
    files = _files(rooms, tmp_path)
    data = os.urandom(2 * CHUNK_SIZE + 5)
    source = tmp_path / "rapport.odt"
    source.write_bytes(data)
    done, descriptor = files.send(room, source)
    blob = files.blobs.path(descriptor.root).read_bytes()
    assert data[:1000] not in blob and len(blob) == len(data) + 3 * 16
    [entry] = files.entries(room)
    assert entry.id == done.events[-1].hex() and entry.state == "complete"
    assert entry.descriptor == descriptor and descriptor.name == "rapport.odt"
    out = files.export(entry, tmp_path / "copie.odt")
    assert out.read_bytes() == data
    # A damaged blob on disk is refused whole: no partial file is left behind.
    damaged = bytearray(blob)
    damaged[CHUNK_SIZE + 100] ^= 1
    files.blobs.path(descriptor.root).write_bytes(bytes(damaged))
    with pytest.raises(Exception, match="does not open") as caught:
        files.export(entry, tmp_path / "abimee.odt")
    assert type(caught.value).__name__ == "ChunkError"
    assert not (tmp_path / "abimee.odt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_files_above_the_limit_are_neither_sent_nor_fetched(world: World, tmp_path: Path) -> None:
    rooms, room = _alone_in_a_room(world)
    files = _files(rooms, tmp_path, FileSettings(max_size=1000))
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1001))
    with pytest.raises(FileTooLarge):
        files.send(room, source)
    with pytest.raises(FileTooLarge):
        files.blobs.want(os.urandom(32), 1001, limit=1000)
    assert files.entries(room) == []


def test_a_download_that_would_not_fit_on_the_disk_is_refused(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms, _room = _alone_in_a_room(world)
    files = _files(rooms, tmp_path)
    free = 100 << 20
    real = shutil.disk_usage

    def fake(path: Any) -> Any:
        return real(path)._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", fake)
    files.blobs.want(os.urandom(32), 10 << 20, limit=1 << 30)  # fits, with the margin
    with pytest.raises(NotEnoughSpace) as caught:
        files.blobs.want(os.urandom(32), 50 << 20, limit=1 << 30)
    assert "MiB needed" in caught.value.render()


def test_images_get_their_dimensions_and_a_small_preview(world: World, tmp_path: Path) -> None:
    rooms, room = _alone_in_a_room(world)
    files = _files(rooms, tmp_path)
    image = Image.new("RGB", (1200, 800), (200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    source = tmp_path / "carte.png"
    source.write_bytes(buffer.getvalue())
    _done, descriptor = files.send(room, source)
    assert descriptor.mime == "image/png"
    assert (descriptor.width, descriptor.height) == (1200, 800)
    assert descriptor.thumbnail is not None and len(descriptor.thumbnail) <= 16 * 1024
    with Image.open(io.BytesIO(descriptor.thumbnail)) as preview:
        assert preview.format == "JPEG" and max(preview.size) <= 160
    # Not an image after all (a lying extension): no preview, no failure.
    fake = tmp_path / "faux.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    _done, descriptor = files.send(room, fake)
    assert descriptor.width is None and descriptor.thumbnail is None


def test_a_message_whose_clear_file_differs_from_its_descriptor_is_not_shown(
    world: World, tmp_path: Path
) -> None:
    rooms, room = _alone_in_a_room(world)
    bruno = world.node("bruno")
    rooms.invite(room, bruno.me.account.account_key)
    world.sync("alice", "bruno")
    bruno.join(room)
    world.sync("bruno", "alice")
    honest = Descriptor(os.urandom(32), 1000, os.urandom(32), "text/plain", "a.txt")
    other = Descriptor(os.urandom(32), 1000, os.urandom(32), "text/plain", "b.txt")
    # A sender of ours never does this; a modified client could.
    rooms._encrypted(
        room,
        EventType.MESSAGE,
        {"body": b"", "file": honest.to_value()},
        {"file": clear_reference(other)},
    )
    world.sync("alice", "bruno")
    [message] = [m for m in bruno.messages(room) if m.waiting != "locked"]
    assert message.body is None and message.waiting == "bad-message"
    assert _files(bruno, tmp_path / "b").entries(room)[0].descriptor is None


def test_saving_never_replaces_a_device_a_fifo_or_a_link(world: World, tmp_path: Path) -> None:
    """Saving is a rename over the target: over /dev/null (as root) it would replace it."""
    rooms, room = _alone_in_a_room(world)
    files = _files(rooms, tmp_path)
    source = tmp_path / "note.txt"
    source.write_bytes(b"contenu")
    files.send(room, source)
    [entry] = files.entries(room)
    fifo = tmp_path / "tube"
    os.mkfifo(fifo)
    link = tmp_path / "lien"
    link.symlink_to(tmp_path / "ailleurs.txt")
    for target in (Path(os.devnull), fifo, link):
        with pytest.raises(StorageError, match="not a regular file"):
            files.export(entry, target, replace=True)
    assert Path(os.devnull).is_char_device() and fifo.is_fifo() and link.is_symlink()
    assert not (tmp_path / "ailleurs.txt").exists()
