"""The workspace folder, and the confinement of every file tool to it.

Agents name files by paths relative to the workspace. A path is refused when it is
absolute, when any part of it is ``..``, or when, after following symlinks, it lands
outside the workspace (a symlink inside that points out). What is left is the real
path, and its canonical relative form is the file's resource name, so two spellings
of one file (through a symlink inside the workspace) are one resource.

The check and the use are separate system calls, so a process that swaps a folder for
a symlink between the two could race a write made by path. File tools therefore use
the checked path only through :meth:`Workspace.confined`, which walks it from a
descriptor of the workspace folder without following any symlink (see
:mod:`wakeful.core.files`). Messages name workspace-relative paths only.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from wakeful.core.files import Confined
from wakeful.core.resources import ROOT
from wakeful.errors import PathEscapeError, ResourceError

MAX_PATH_CHARS = 1024


class Workspace:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def real_root(self) -> Path:
        return self.root.resolve()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` inside the workspace, or a clear refusal."""
        if not isinstance(path, str) or not path.strip():
            raise ResourceError("path is empty; give a path relative to the workspace "
                                "folder, e.g. 'notes.md' or 'docs/plan.md' ('.' is the "
                                "workspace itself)")
        if len(path) > MAX_PATH_CHARS:
            raise ResourceError(f"path is {len(path)} characters long; the limit is "
                                f"{MAX_PATH_CHARS}")
        if "\x00" in path:
            raise PathEscapeError(f"path {path!r} contains a NUL character")
        pure = PurePosixPath(path)
        if pure.is_absolute() or path.startswith("~") or (len(path) > 1 and path[1] == ":"):
            raise PathEscapeError(f"path {path!r} is absolute; file tools only reach the "
                                  "workspace folder, so give a path relative to it")
        if ".." in pure.parts:
            raise PathEscapeError(f"path {path!r} contains '..'; paths may not climb out "
                                  "of the workspace folder")
        root = self.real_root
        try:
            real = Path(os.path.realpath(root / pure))
        except OSError:  # a part changed while it was followed (a racing process)
            raise PathEscapeError(f"path {path!r} changed while it was checked (a part "
                                  "of it became or stopped being a symbolic link); "
                                  "refused") from None
        if real != root and root not in real.parents:
            raise PathEscapeError(f"path {path!r} leads outside the workspace folder "
                                  "through a symbolic link; refused")
        return real

    def canonical(self, path: str) -> str:
        """The canonical relative name of ``path`` (``.`` for the workspace itself)."""
        real = self.resolve(path)
        relative = real.relative_to(self.real_root)
        return relative.as_posix() if relative.parts else ROOT

    def display(self, real: Path) -> str:
        relative = real.relative_to(self.real_root)
        return relative.as_posix() if relative.parts else ROOT

    def confined(self, real: Path) -> Confined:
        """File operations on ``real`` (from :meth:`resolve`) that cannot be raced out."""
        root = self.real_root
        return Confined(str(root), PurePosixPath(real.relative_to(root).as_posix()),
                        self.display(real))
