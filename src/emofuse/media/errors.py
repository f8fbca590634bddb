"""One error type for every media problem, and the one place where PyAV's errors are translated.

Callers (corpus checks, feature extraction) catch `MediaError` to reject a clip with a reason;
the message always names the file and what was wrong with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av


class MediaError(RuntimeError):
    """A file that cannot be used as media: missing, empty, not media, truncated, or lacking the
    stream asked for (no video stream, no audio track)."""


@contextmanager
def open_container(path: str | Path) -> Iterator[av.container.InputContainer]:
    """`av.open` for reading, with FFmpeg's errors turned into a `MediaError` that names the file.

    Errors raised while the caller decodes inside the `with` block are translated too, so a file
    that opens but breaks mid-stream (a truncated download) gets the same treatment."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        # FFmpeg's own message for this ("Invalid data found when processing input") hides the cause.
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        # Tags are text of any encoding in the wild (latin-1 handler names, flipped bytes): a tag
        # that is not UTF-8 must not make the media unreadable.
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path}: not a readable media file: not media at all, or cut short before its header or index"
            f" ({_reason(e)})"
        ) from e
    try:
        yield container
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path}: decoding failed, the file is probably truncated or corrupt ({_reason(e)})"
        ) from e
    finally:
        container.close()


def _reason(e: av.error.FFmpegError) -> str:
    return getattr(e, "strerror", None) or str(e)
