"""Writing files so that readers only ever see the old or the new version.

The content goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target (atomic on POSIX and Windows). A crash or kill at any moment leaves the
previous file untouched and, at worst, a stray `.tmp-*` file. Whole folders are written
the same way: `publish_directory` adds one (a SavedModel version, never replacing one),
`replace_directory` puts one in place of another (a style's weights and metadata, as a
unit). What is written gets the permissions that a plain `open` or `os.makedirs` would
give under the umask, not the private ones of temporary files.
"""

import errno
import os
import shutil
import stat
import tempfile

_PREFIX = ".tmp-"


def _umask():
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Calls `write(binary_file)` and moves the result to `path`. A file replaced keeps its
    permissions; a new one gets 0666 less the umask. Errors name `path`, not the
    temporary file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_PREFIX, suffix="-" + os.path.basename(path),
                                   dir=directory)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and str(e.filename or "").startswith(
                os.path.join(directory, _PREFIX)):
            raise OSError(e.errno, e.strerror, path) from None  # the same subclass
        raise


def _new_folder(parent, write):
    """A hidden new folder in `parent` holding what `write(folder)` put there, flushed to
    disk, with the permissions `os.makedirs` would give it."""
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        write(tmp)
        for root, _, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def publish_directory(parent, write, names):
    """Calls `write(folder)` on a new hidden folder in `parent`, flushes it to disk, and
    renames it to the first of `names` that does not exist yet; returns the new path.
    An existing folder is never replaced: FileExistsError when every name is taken."""
    tmp = _new_folder(parent, write)
    try:
        for name in names:
            target = os.path.join(parent, name)
            if os.path.lexists(target):
                continue
            try:
                os.rename(tmp, target)  # fails on a non-empty folder created meanwhile
                return target
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise FileExistsError(f"{parent}: every name asked for is taken")
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def replace_directory(path, write):
    """Calls `write(folder)` on a new hidden folder beside `path`, flushes it to disk, and
    puts it in place of `path`, replacing the folder there, if any. A kill while writing
    leaves the old folder as it was. (No call replaces a folder atomically: the old one is
    moved aside, then the new one into place; a kill between those two renames leaves the
    old one, whole, beside `path` as a hidden `.tmp-*-old`.)"""
    tmp = _new_folder(os.path.dirname(os.path.abspath(path)), write)
    old = tmp + "-old"
    try:
        try:
            os.rename(path, old)
        except FileNotFoundError:
            old = None
        os.rename(tmp, path)
    except BaseException:
        if old and os.path.isdir(old) and not os.path.lexists(path):
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old)


def writable_folder(path):
    """Makes `path` a folder if it is none yet and checks that files can be written in it,
    so that a long job fails at its start rather than after its work: OSError naming
    `path` otherwise."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write in this folder", path)
