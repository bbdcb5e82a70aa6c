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


def output_error(exc: BaseException, path: str | os.PathLike[str]) -> BaseException:
    """``exc`` as an :class:`OutputError` naming ``path`` when the disk is the cause, also behind a writer's own error
    (torch.save's zip writer turns a full disk into ``RuntimeError: ... unexpected pos``); else ``exc`` itself."""
    from .errors import OutputError

    disk, hops = exc, 0
    while not (isinstance(disk, OSError) and disk.errno in _DISK_ERRNOS):
        disk, hops = disk.__cause__ or disk.__context__, hops + 1
        if disk is None or hops > 8:
            return exc
    why = "no space left on the device" if disk.errno in (errno.ENOSPC, errno.EDQUOT) else (
        disk.strerror or str(disk)).lower()
    err = OutputError(f"cannot write {path}: {why}")
    err.errno = disk.errno  # type: ignore[attr-defined]  (callers that explain it their own way: the cache)
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
    """A size in the unit that shows it (never "0 MB" for a few kilobytes)."""
    if n < 2**20:
        return f"{max(1, round(n / 2**10)):,} KB" if n else "0 bytes"
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
        err = output_error(exc, path)
        if err is not exc:
            raise err from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def finite(obj: Any) -> Any:
    """``obj`` with every float that is not finite (NaN, infinity) replaced by None: JSON has no NaN, and a metric
    that is undefined is ``null`` (its producer says why beside it). Numpy scalars and arrays become plain values."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if type(obj).__module__ == "numpy":
        return finite(obj.tolist()) if hasattr(obj, "tolist") else obj
    return obj


def json_text(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """The one JSON writer: non-finite floats as null (:func:`finite`), never a NaN token, never a crash on one."""
    return json.dumps(finite(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json_text(obj) + "\n")


#: the marker transferlab writes into every directory it owns: the names it wrote there. A directory is replaced or
#: resumed only when every entry in it is proven transferlab's by a marker, never by its name or a folder's name.
OWNER_FILE = ".transferlab-output.json"


def mark_owned(directory: str | os.PathLike[str], entries: Any = None) -> None:
    """Record ``entries`` (default: everything ``directory`` holds now) as written by transferlab."""
    from ._version import __version__

    directory = Path(directory)
    names = sorted(entries if entries is not None else (p.name for p in directory.iterdir() if p.name != OWNER_FILE))
    write_json_atomic(directory / OWNER_FILE, {"written_by": "transferlab", "transferlab_version": __version__,
                                                "entries": names})


def _owned_names(directory: Path) -> set[str] | None:
    """The names ``directory``'s marker lists; None without a readable marker."""
    p = directory / OWNER_FILE
    if p.is_symlink() or not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("written_by") != "transferlab" or not isinstance(d.get("entries"), list):
        return None
    return {str(n) for n in d["entries"]}


def foreign_entries(directory: str | os.PathLike[str]) -> list[str]:
    """The entries of ``directory`` that no transferlab marker proves transferlab's (sorted; [] for a missing or
    empty directory). A sub-directory counts as transferlab's when the parent's marker lists it, or when it is not
    empty and nothing in it is foreign (a run's checkpoints, marked by their own marker; a method's checkpoint
    phases, each marked). Leftover temporaries of transferlab's atomic writes
    (``.NAME.*.tmp``) in a directory with a marker are transferlab's too."""
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        return []
    owned = _owned_names(directory)
    foreign = []
    for p in directory.iterdir():
        if p.name == OWNER_FILE and owned is not None:
            continue
        if owned is not None and (p.name in owned or (p.name.startswith(".") and p.name.endswith(".tmp"))):
            continue
        if p.is_dir() and not p.is_symlink() and any(p.iterdir()) and not foreign_entries(p):
            continue
        foreign.append(p.name)
    return sorted(foreign)


def refuse_foreign(out: str | os.PathLike[str], what: str = "--out") -> None:
    """Raise when ``out`` holds anything transferlab did not write: such a directory is never replaced, not even
    with ``--overwrite`` (a user's files would be lost)."""
    from .errors import OutputError

    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{what} {out} holds files transferlab did not write ({shown}); it is never replaced, "
                          "not even with --overwrite: choose another --out, or move those files away")


def sibling_dir(out: str | os.PathLike[str], kind: str) -> Path:
    """A new temporary directory beside ``out`` (``.NAME.KIND.PID.XXXX``): the process id in its name lets a later
    run remove it when the process that made it was killed (:func:`remove_stale_siblings`)."""
    out = Path(out)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}.{os.getpid()}.", dir=out.parent))


def remove_stale_siblings(out: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary siblings of ``out`` (:func:`sibling_dir`) left by a process that no longer runs (kill -9
    during a run: scratch checkpoints, a half-built output, a replaced output's trash); the names removed."""
    import glob
    import shutil

    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.glob(f".{glob.escape(out.name)}.*.*.*"):
        parts = p.name[len(out.name) + 2:].split(".")
        if len(parts) < 3 or not parts[1].isdigit() or not p.is_dir() or p.is_symlink():
            continue
        if _alive(int(parts[1])):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def replace_dir(new: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Put the finished directory ``new`` at ``out`` (a sibling), replacing what was there only once ``new`` is
    complete; on failure ``out`` is as it was. ``new`` is marked as transferlab's (:func:`mark_owned`); an ``out``
    holding anything transferlab did not write is refused, never replaced."""
    import shutil

    new, out = Path(new), Path(out)
    refuse_foreign(out)
    mark_owned(new)
    if out.exists():
        trash = sibling_dir(out, "old")
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
        remove_stale_siblings(out)
        tmp = sibling_dir(out, "new")
    except OSError as exc:
        raise output_error(exc, out) from None
    try:
        yield tmp
        kept = {k for k in _KEEP_MODE if Path(k).is_relative_to(tmp.resolve())}  # copies of private files
        for p in tmp.rglob("*"):  # files written inside with mkstemp (safetensors, peft) keep 0600 otherwise
            if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) == 0o600 \
                    and str(p.resolve()) not in kept:
                normal_permissions(p)
        normal_permissions(tmp, directory=True)
        replace_dir(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise output_error(exc, out) from None
        raise
    finally:
        _KEEP_MODE.difference_update({k for k in _KEEP_MODE if Path(k).is_relative_to(tmp.resolve())})


def copy_inside(src: str | os.PathLike[str], root: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy the file or directory ``src``, which lies inside the input folder ``root``, to ``dest``. A symbolic link
    that leads out of ``root`` (at ``src`` or anywhere below it) is refused by name, never followed: an input folder
    cannot smuggle a file from elsewhere into an output (a Hugging Face cache snapshot's links into its own
    repository's ``blobs/`` are inside). Copies keep the source's permission bits, less the umask:
    a private file stays private."""
    import shutil

    from .errors import TransferlabError

    src, root, dest = Path(src), Path(root), Path(dest)
    real_root = root.resolve()
    if real_root.parent.name == "snapshots" and real_root.parent.parent.name.startswith("models--"):
        real_root = real_root.parent.parent  # a Hugging Face cache snapshot: its files link to the repo's blobs/

    def checked(p: Path) -> Path:
        real = p.resolve()
        if not real.is_relative_to(real_root):
            raise TransferlabError(f"{p} is a symbolic link to {real}, outside the input folder {root}: refused "
                                   "(copy the file into the folder if it belongs to the model)")
        return real

    def copy_file(s: Path, d: Path) -> None:
        real = checked(s)
        shutil.copyfile(real, d)
        os.chmod(d, real.stat().st_mode & 0o777 & ~_umask())
        _KEEP_MODE.add(str(d.resolve()))  # atomic_dir leaves its mode as it is

    try:
        if not checked(src).is_dir():
            copy_file(src, dest)
            return
        for top, dirs, files in os.walk(src, followlinks=False):
            rel = Path(top).relative_to(src)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in dirs:
                if (Path(top) / name).is_symlink():
                    raise TransferlabError(f"{Path(top) / name} is a symbolic link to a folder: refused (a model "
                                           "folder's files are copied, links to folders are not followed)")
            for name in files:
                copy_file(Path(top) / name, dest / rel / name)
    except OSError as exc:
        raise output_error(exc, dest) from None


#: files copied by :func:`copy_inside` whose source's mode they keep (not widened by :func:`atomic_dir`)
_KEEP_MODE: set[str] = set()


def normal_permissions(path: str | os.PathLike[str], directory: bool = False) -> None:
    """What a plain ``open()`` or ``mkdir()`` would have given (0666 or 0777 less the umask): temporary files and
    directories are created 0600 / 0700, and a renamed temporary must not keep that."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
