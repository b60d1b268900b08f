"""Files a job writes: refused when they are the same file as an input, and reports written
whole or not at all.

Two paths name the same file when they resolve to the same path (symbolic links followed) or,
when both exist, to the same inode on the same device (hard links). Standard input counts as
the file or pipe it is connected to. Every check runs before anything is opened for writing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType
from typing import IO, TextIO

from ._errors import CliError

__all__ = ["AtomicTextFile", "check_job_paths", "same_file"]


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (resolved paths or inode and device)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _is_stdin(path: str, stdin: TextIO) -> bool:
    """Whether ``path`` is the file or pipe standard input reads from (``/dev/stdin``, the
    file that was redirected to it …)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(stdin.fileno()))
    except (OSError, ValueError, AttributeError):  # no such file, or stdin has no descriptor
        return False


def check_job_paths(
    *, serials_file: str, journal: str | None, report: str | None, stdin: TextIO
) -> None:
    """Refuse outputs that would overwrite an input of the job.

    The journal is read and appended to; the report is written. Neither may be the serials
    file (or standard input when it is ``-``), nor may the report be the journal.

    Raises:
        CliError: (exit 2) two options name the same file, or an output is ``-``.
    """
    outputs = [("--journal", journal), ("--report", report)]
    for option, path in outputs:
        if path == "-":
            raise CliError(f"{option} needs a file name ('-' is not accepted here)")
    inputs: list[tuple[str, str]] = [("--journal", journal)] if journal else []
    for option, path in outputs:
        if path is None:
            continue
        if serials_file == "-":
            if _is_stdin(path, stdin):
                raise CliError(
                    f"{option} {path} is the file standard input reads serials from; "
                    "it would be overwritten: choose another file"
                )
        elif same_file(path, serials_file):
            raise CliError(
                f"{option} {path} is the same file as --serials-file {serials_file}; "
                "it would be overwritten: choose another file"
            )
        for other, input_path in inputs:
            if other != option and same_file(path, input_path):
                raise CliError(
                    f"{option} {path} is the same file as {other} {input_path}; "
                    "it would be overwritten: choose another file"
                )
        if os.path.isdir(path):
            raise CliError(f"{option} {path} is a directory")


class AtomicTextFile:
    """A text file written under a temporary name beside ``path`` and renamed over ``path``
    by :meth:`commit` (:func:`os.replace`), so ``path`` holds either its old content or the
    whole new one. :meth:`discard` drops the temporary file and leaves ``path`` alone.

    A symbolic link at ``path`` is followed: the file it points to is replaced. The new file
    keeps the mode of the file it replaces (a new one gets the usual ``0o666`` minus umask).

    Raises:
        CliError: the temporary file cannot be created (missing directory, no permission).
    """

    def __init__(self, path: str, *, what: str = "file") -> None:
        self.path = Path(os.path.realpath(path))
        self._what = what
        self._fh: IO[str] | None = None
        self.lines = 0
        """Lines written so far."""
        while True:
            temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            except OSError as exc:
                raise CliError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
            break
        self.temp = temp
        self._fh = os.fdopen(fd, "w", encoding="utf-8")

    def write_line(self, line: str) -> None:
        assert self._fh is not None, "the file was committed or discarded"
        self._fh.write(line + "\n")
        self.lines += 1

    def commit(self) -> None:
        """Rename the temporary file over ``path`` (idempotent)."""
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        try:
            fh.close()
            with contextlib.suppress(FileNotFoundError):  # a new file: the umask decides
                os.chmod(self.temp, stat.S_IMODE(os.stat(self.path).st_mode))
            os.replace(self.temp, self.path)
        except OSError as exc:
            self._unlink()
            raise CliError(
                f"cannot write {self._what} {self.path}: {exc.strerror or exc}"
            ) from None

    def discard(self) -> None:
        """Drop what was written; ``path`` keeps its old content (idempotent)."""
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        fh.close()
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)

    def __enter__(self) -> AtomicTextFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commits when something was written or the block ended normally; discards when the
        block raised before writing anything."""
        if exc_type is None or self.lines:
            self.commit()
        else:
            self.discard()
