"""Atomic writes: write to a temporary file beside the target, then rename. Output locations are checked before
any work (:func:`check_output`); a write that fails for a reason of the disk (full, read-only, no permission) is an
:class:`~transferlab.errors.OutputError` naming the path."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: errno values that mean "this location cannot take the output" (not a bug): reported as one clear error
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.ENAMETOOLONG}


def output_error(exc: OSError, path: str | os.PathLike[str]) -> Exception:
    """``exc`` as an :class:`OutputError` naming ``path`` when the disk is the cause; else ``exc`` itself."""
    from .errors import OutputError

    if exc.errno not in _DISK_ERRNOS:
        return exc
    why = "no space left on the device" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (
        exc.strerror or str(exc)).lower()
    err = OutputError(f"cannot write {path}: {why}")
    err.errno = exc.errno  # type: ignore[attr-defined]  (callers that explain it their own way: the cache)
    return err


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(out: str | os.PathLike[str], *, kind: str = "dir", need_bytes: int = 0, inputs: Any = (),
                 what: str = "--out") -> Path:
    """Refuse, before any work, an output location that cannot take the result: ``kind="dir"`` where a file is,
    ``kind="file"`` where a directory is, a path under a file, a location that cannot be written (tried with a real
    temporary file: permission bits do not tell for root or read-only mounts), less free space than ``need_bytes``
    (what is known of the output's size) or one of the command's own ``inputs`` (or a directory holding one)."""
    from .errors import OutputError

    out = Path(out)
    if kind == "dir" and out.exists() and not out.is_dir():
        raise OutputError(f"{what} {out} is a file; give a directory")
    if kind == "file" and out.is_dir():
        raise OutputError(f"{what} {out} is a directory; give a file name")
    where = _existing_ancestor(out.parent if not out.is_dir() else out)
    if not where.is_dir():
        raise OutputError(f"{what} {out} cannot be created: {where} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".transferlab-probe.", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {out} cannot be written: {where}: {(exc.strerror or str(exc)).lower()}") from None
    if need_bytes > 0:
        import shutil

        free = shutil.disk_usage(where).free
        if free < need_bytes:
            raise OutputError(f"{what} {out}: about {_mb(need_bytes)} needed, {_mb(free)} free on that device")
    target = out.resolve()
    for item in inputs or ():
        if item is None or not isinstance(item, (str, os.PathLike)) or not Path(item).exists():
            continue
        src = Path(item).resolve()
        if target == src or src.is_relative_to(target) or (src.is_dir() and target.is_relative_to(src)):
            raise OutputError(f"{what} {out} would replace or sit inside one of this command's inputs ({item}); "
                              "choose another output location")
    return out


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


def write_files_atomic(directory: str | os.PathLike[str], files: dict[str, str | bytes]) -> dict[str, Path]:
    """Write several files into ``directory`` so that they appear together or not at all: every file is written
    completely to a temporary name first (where a full disk fails), then all are renamed (renames need no space)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, directory) from None
    temps: dict[str, str] = {}
    try:
        for name, content in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            temps[name] = tmp
            with os.fdopen(fd, "wb") as fh:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
                fh.flush()
                os.fsync(fh.fileno())
            normal_permissions(tmp)
        for name, tmp in temps.items():
            os.replace(tmp, directory / name)
    except OSError as exc:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise output_error(exc, directory) from None
    except BaseException:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return {name: directory / name for name in files}


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def replace_dir(new: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Put the finished directory ``new`` at ``out`` (a sibling), replacing what was there only once ``new`` is
    complete; on failure ``out`` is as it was."""
    import shutil

    new, out = Path(new), Path(out)
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        try:
            os.replace(out, trash / out.name)
            try:
                os.replace(new, out)
            except BaseException:
                os.replace(trash / out.name, out)
                raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, out)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temporary sibling of ``out`` and swap it in on success (any earlier ``out`` is
    replaced only then); on any exception the temporary directory is removed and ``out`` is untouched."""
    import shutil

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise output_error(exc, out) from None
    try:
        yield tmp
        for p in tmp.rglob("*"):  # files written inside with mkstemp (safetensors, peft) keep 0600 otherwise
            if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) == 0o600:
                normal_permissions(p)
        normal_permissions(tmp, directory=True)
        replace_dir(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise output_error(exc, out) from None
        raise


def normal_permissions(path: str | os.PathLike[str], directory: bool = False) -> None:
    """What a plain ``open()`` or ``mkdir()`` would have given (0666 or 0777 less the umask): temporary files and
    directories are created 0600 / 0700, and a renamed temporary must not keep that."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
