"""The progress line of ``onex stamp`` / ``onex verify``: drawn on a terminal (a real pseudo-terminal here), never
into a file or a pipe."""

from __future__ import annotations

import io
import os
import pty

from framework.cli.progress import Progress


def test_a_terminal_gets_a_bar_that_fills_and_is_cleared_at_the_end() -> None:
    leader, follower = pty.openpty()
    try:
        with open(follower, "w", encoding="utf-8") as terminal:  # closing it ends what the leader can read
            progress = Progress(3, "stamping", terminal)
            for name in ("a.py", "b.md", "c.txt"):
                progress.step(name)
            progress.close()
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        written = b"".join(chunks).decode()
    finally:
        os.close(leader)
    frames = [frame.rstrip() for frame in written.split("\r") if frame.strip()]
    assert frames == [
        "stamping [" + "#" * 10 + "-" * 20 + "] 1/3 a.py",
        "stamping [" + "#" * 20 + "-" * 10 + "] 2/3 b.md",
        "stamping [" + "#" * 30 + "] 3/3 c.txt",
    ]
    assert written.endswith("\r" + " " * 120 + "\r")  # the line is cleared for the summary that follows


def test_a_file_or_a_pipe_gets_no_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(3, "stamping", stream)
    progress.step("a.py")
    progress.close()
    assert stream.getvalue() == "" and progress.done == 1
