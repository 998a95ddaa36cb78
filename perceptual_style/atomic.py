"""Writing files so that readers only ever see the old or the new version.

The content goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target (atomic on POSIX and Windows). A crash or kill at any moment leaves the
previous file untouched and, at worst, a stray `.tmp-*` file.
"""

import os
import tempfile


def atomic_write(path, write):
    """Calls `write(binary_file)` and moves the result to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
