"""A log file a guest can live without: the console log, a QMP transcript.

Why one class: a disk that fills up (or a results directory that turns
read-only) in the middle of a run must cost the run its log, never its
guest.  Opening or writing fails -> one WARNING naming the file and the
reason, the file is dropped, ``broken`` says why (the run's summary lists
it), and later writes are no-ops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class SideLog:
    """Append-only file for *what* (``"console log"``, ``"QMP transcript"``) of *owner*."""

    def __init__(self, path: Path | None, what: str, owner: str, *, binary: bool = False) -> None:
        self.path = path
        self.what = what
        self.owner = owner
        self.broken: str | None = None
        self._file: IO[Any] | None = None
        if path is None:
            return
        try:
            self._file = open(path, "ab", buffering=0) if binary else open(path, "a")
        except OSError as exc:
            self._broke(exc)

    def _broke(self, exc: OSError) -> None:
        self.broken = f"{exc.strerror or exc}"
        log.warning("%s: %s %s cannot be written (%s); going on without it",
                    self.owner, self.what, self.path, self.broken)
        self.close()

    def write(self, data: str | bytes) -> None:
        """Write (and flush a text file); a failure is reported once, then ignored."""
        if self._file is None:
            return
        try:
            self._file.write(data)
            if not isinstance(data, bytes):
                self._file.flush()
        except OSError as exc:
            self._broke(exc)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
