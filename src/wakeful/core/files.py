"""File operations that cannot be raced out of the workspace.

:meth:`Workspace.resolve` checks a path once; between that check and the write,
another process could swap a folder of it for a symlink to the outside, and a write by
path would follow it (33 of 400 racing writes landed outside). So every operation here
starts from a file descriptor of the workspace folder and walks the checked, symlink-free
path one component at a time with ``O_NOFOLLOW`` (``openat``), and then reads, writes,
renames and lists relative to the last folder's descriptor. A component swapped for a
symlink makes the walk fail (``ELOOP``/``ENOTDIR``), and is refused; a folder renamed
while held is still the folder that was checked, inside the workspace.

Files are also refused when they are not what a text tool should touch: a hard link
(``st_nlink > 1``: it may be a file outside the workspace, planted inside), a FIFO (its
open would block a thread until someone writes), a device or a socket. Errors name the
workspace-relative path only, never the machine's absolute path.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath

from wakeful.errors import PathEscapeError, ResourceError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _os_error(exc: OSError, shown: str, writing: bool = False) -> ResourceError:
    """An OSError as the model should see it: the relative path and what went wrong."""
    if exc.errno == errno.ELOOP:
        return PathEscapeError(f"path {shown!r} changed while in use (a part of it became "
                               "a symbolic link); refused")
    if exc.errno == errno.ENOTDIR:
        return PathEscapeError(f"path {shown!r}: a part of it is not a folder (or became "
                               "something else while in use); refused")
    if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
        return ResourceError(f"{shown} is not a regular file (a FIFO, device or socket); "
                             "file tools only read and write regular files")
    if exc.errno == errno.ENOENT and writing:
        return ResourceError(f"path {shown!r}: a folder of it disappeared while in use; "
                             "nothing was written")
    if exc.errno == errno.ENOENT:
        return ResourceError(f"no file {shown} in the workspace")
    return ResourceError(f"{shown}: {exc.strerror or 'operating system error'}")


class Confined:
    """Operations on one workspace-relative path, through directory descriptors."""

    def __init__(self, root: str, relative: PurePosixPath, shown: str) -> None:
        self.root = root  # the workspace's real path (never shown)
        self.parts = [p for p in relative.parts if p not in ("", ".")]
        self.shown = shown

    @contextmanager
    def _folder(self, parts: list[str], create: bool = False) -> Iterator[int]:
        """A descriptor of the folder ``parts`` below the root, walked without following
        a symlink anywhere; folders are made on the way when ``create``."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _checked(self, fd: int, writing: bool) -> os.stat_result:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            hint = "" if writing else "; use list_files to see what is in it"
            raise ResourceError(f"{self.shown} is a folder, not a file{hint}")
        if not stat.S_ISREG(info.st_mode):
            raise ResourceError(f"{self.shown} is not a regular file (a FIFO, device or "
                                "socket); file tools only read and write regular files")
        if info.st_nlink > 1:
            raise ResourceError(f"{self.shown} has {info.st_nlink} hard links; refused, "
                                "since another link may be outside the workspace")
        return info

    def read_bytes(self, limit: int) -> bytes:
        """Up to ``limit + 1`` bytes of the file (the caller checks the limit)."""
        if not self.parts:
            raise ResourceError(". is the workspace folder; use list_files to see it")
        try:
            with self._folder(self.parts[:-1]) as folder:
                fd = os.open(self.parts[-1], os.O_RDONLY | _FILE_FLAGS, dir_fd=folder)
                try:
                    self._checked(fd, writing=False)
                    os.set_blocking(fd, True)
                    chunks: list[bytes] = []
                    left = limit + 1
                    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                        chunks.append(chunk)
                        left -= len(chunk)
                    return b"".join(chunks)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _os_error(exc, self.shown) from None

    def write_atomically(self, data: bytes) -> None:
        """Write a fresh file beside the target, then rename it over the target (both in
        the one folder held open): a reader or a crash sees old or new, never half."""
        if not self.parts:
            raise ResourceError(". is the workspace folder, not a file")
        name = self.parts[-1]
        temp = f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self._folder(self.parts[:-1], create=True) as folder:
                try:
                    info = os.stat(name, dir_fd=folder, follow_symlinks=False)
                except FileNotFoundError:
                    info = None
                if info is not None and stat.S_ISDIR(info.st_mode):
                    raise ResourceError(f"{self.shown} is a folder, not a file")
                if info is not None and not (stat.S_ISREG(info.st_mode)
                                             or stat.S_ISLNK(info.st_mode)):
                    raise ResourceError(f"{self.shown} is not a regular file (a FIFO, "
                                        "device or socket); refused")
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS,
                             0o644, dir_fd=folder)
                try:
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                    finally:
                        os.close(fd)
                    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
                except BaseException:
                    with suppress(OSError):
                        os.unlink(temp, dir_fd=folder)
                    raise
        except OSError as exc:
            raise _os_error(exc, self.shown, writing=True) from None

    def append(self, data: bytes) -> None:
        if not self.parts:
            raise ResourceError(". is the workspace folder, not a file")
        try:
            with self._folder(self.parts[:-1], create=True) as folder:
                fd = os.open(self.parts[-1], os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | _FILE_FLAGS, 0o644, dir_fd=folder)
                try:
                    self._checked(fd, writing=True)
                    os.set_blocking(fd, True)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _os_error(exc, self.shown, writing=True) from None

    def listing(self) -> list[tuple[str, bool]]:
        """(name, is a folder) for each entry of the folder, unsorted."""
        try:
            with self._folder(self.parts) as folder, os.scandir(folder) as entries:
                return [(e.name, e.is_dir()) for e in entries]
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ResourceError(f"{self.shown} is not a folder of the workspace") from None
            raise _os_error(exc, self.shown) from None

