"""Stamps and file types without the service: detection, round trips, idempotence, tampering, protocol checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from nodes.metadata_stamping import stamps
from nodes.metadata_stamping.files import stamp_file, verify_file
from nodes.metadata_stamping.filetypes import BINARY_TYPES, FileTypes, sniff

from .samples import BINARY, TEXT

TYPES = FileTypes()


@pytest.mark.parametrize("ext", sorted(BINARY))
def test_magic_bytes_agree_with_the_extension(ext: str) -> None:
    found = TYPES.detect(f"f.{ext}", BINARY[ext])
    assert found.mismatch is False and found.binary is True and found.comment is None
    assert found.handler_type == BINARY_TYPES[ext][0]
    assert sniff(BINARY[ext]) is not None


def test_an_extension_that_lies_is_reported() -> None:
    png_as_txt = TYPES.detect("photo.txt", BINARY["png"])
    assert png_as_txt.mismatch and png_as_txt.binary and png_as_txt.detected == "png" and png_as_txt.comment is None
    text_as_png = TYPES.detect("photo.png", b"just text")
    assert text_as_png.mismatch and text_as_png.binary and text_as_png.comment is None
    gif_as_pdf = TYPES.detect("doc.pdf", BINARY["gif"])
    assert gif_as_pdf.mismatch and gif_as_pdf.detected == "gif"


def test_handlers_come_from_protocol_handler_rows() -> None:
    types = FileTypes()
    types.load(
        [
            {"handler_type": "image", "file_extensions": ["png"], "is_active": True},
            {"handler_type": "video", "file_extensions": ["mp4"], "is_active": False},
        ]
    )
    assert types.detect("a.png", BINARY["png"]).handler_type == "image"
    assert types.detect("a.mp4", BINARY["mp4"]).handler_type is None


@pytest.mark.parametrize("name", sorted(TEXT))
@pytest.mark.parametrize("rich", [False, True])
def test_text_round_trip_is_idempotent_and_detects_tampering(name: str, rich: bool, tmp_path: Path) -> None:
    path = tmp_path / (name if "." in name else f"file.{name}")
    original = TEXT[name]
    path.write_bytes(original.encode())
    first = stamp_file(path, namespace="t.files", rich=rich, dry_run=False, types=TYPES)
    assert first.outcome == "stamped"
    assert first.file_hash == blake3(original.encode()).hexdigest()  # the hash covers the content without stamps
    stamped = path.read_bytes().decode()
    assert stamps.strip(stamped) == original
    if original.startswith(("#!", "<?xml")):
        assert stamped.splitlines()[0] == original.splitlines()[0]  # the first line stays first
    if "\r\n" in original:
        assert "\n" not in stamped.replace("\r\n", "")
    assert verify_file(path, types=TYPES).outcome == "valid"
    # Stamping again: unchanged; forcing the other form replaces, never stacks, stamps.
    assert stamp_file(path, namespace="t.files", rich=rich, dry_run=False, types=TYPES).outcome == "unchanged"
    stamp_file(path, namespace="t.files", rich=not rich, dry_run=False, types=TYPES)
    assert len(stamps.find(path.read_text())) == 1
    assert stamps.strip(path.read_bytes().decode()) == original
    path.write_bytes(path.read_bytes() + b"tampered\n")
    assert verify_file(path, types=TYPES).outcome == "tampered"


@pytest.mark.parametrize("ext", sorted(BINARY))
def test_binary_files_are_never_modified(ext: str, tmp_path: Path) -> None:
    path = tmp_path / f"file.{ext}"
    path.write_bytes(BINARY[ext])
    result = stamp_file(path, namespace="t.files", rich=True, dry_run=False, types=TYPES)
    assert result.outcome == "binary" and result.file_hash == blake3(BINARY[ext]).hexdigest()
    assert path.read_bytes() == BINARY[ext]
    assert verify_file(path, types=TYPES).outcome == "binary"


def test_unstamped_text_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("nothing here\n")
    assert verify_file(path, types=TYPES).outcome == "missing"


def test_values_cannot_break_out_of_their_comment() -> None:
    info = stamps.StampInfo(
        uid="6f6e6578-0000-5000-8000-6d657461646d",
        file_hash="a" * 64,
        timestamp="2025-01-01T00:00:00+00:00",
        namespace="x",
        file_size=1,
        file_path="evil --> */ \n name",
        content_type="text/html",
    )
    for comment in (("<!-- ", " -->"), ("/* ", " */")):
        text = stamps.render(info, "rich", comment)
        assert text.count(comment[1].strip()) == text.count("\n")  # one closer per line, none from the value
        found = stamps.find(text + "body\n")
        assert found[0].fields["file_path"] == info.file_path
        assert stamps.strip(text + "body\n") == "body\n"


def test_protocol_checks() -> None:
    info = stamps.StampInfo(
        uid="6f6e6578-0000-5000-8000-6d657461646d",
        file_hash="b" * 64,
        timestamp="2025-01-01T00:00:00+00:00",
        namespace="good.ns",
        file_size=3,
    )
    rich = stamps.find(stamps.render(info, "rich", ("# ", "")))[0]
    assert all(c.passed for c in stamps.protocol_checks(rich))
    light = stamps.find(stamps.render(info, "lightweight", ("// ", "")))[0]
    assert all(c.passed for c in stamps.protocol_checks(light))
    bad = stamps.find("# ONEX:uid=not-a-uuid,hash=ABC,ts=yesterday,ns=Bad\n")[0]
    failed = {c.name for c in stamps.protocol_checks(bad) if not c.passed}
    assert failed == {"uid", "hash", "timestamp", "namespace"}


def _onex(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework.cli.main", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_cli_stamp_and_verify(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(TEXT["py"])
    (tmp_path / "src" / "b.md").write_text(TEXT["md"])
    (tmp_path / "src" / "c.png").write_bytes(BINARY["png"])
    dry = _onex("stamp", "src", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "would-stamp: src/a.py" in dry.stdout and "dry run" in dry.stdout
    assert (tmp_path / "src" / "a.py").read_text() == TEXT["py"]
    assert _onex("verify", "src", cwd=tmp_path).returncode == 1  # missing stamps
    done = _onex("stamp", "src", "--namespace", "t.cli", "--rich", cwd=tmp_path)
    assert done.returncode == 0 and "3 files: 1 binary, 2 stamped" in done.stdout
    ok = _onex("verify", "src", cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    with (tmp_path / "src" / "b.md").open("a") as handle:
        handle.write("changed\n")
    bad = _onex("verify", "src", cwd=tmp_path)
    assert bad.returncode == 1 and "tampered: src/b.md" in bad.stderr and "FAILED" in bad.stdout
    assert _onex("stamp", "src", "--namespace", "Bad NS", cwd=tmp_path).returncode == 2
    assert _onex("verify", "nope", cwd=tmp_path).returncode == 2
