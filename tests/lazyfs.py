"""A disk that loses what was not synced: the power-loss tests' file system.

In the spirit of Jepsen's LazyFS: a FUSE pass-through to a directory that keeps every
file's written data in this process's memory until the file is fsynced, as a disk's
cache does. Killing this process is a power cut: what was written and not yet synced is
gone; what was synced is in the directory. Creating, renaming and removing files go
through at once, as on a journaling file system (SQLite's journal never relies on more).

    python -m tests.lazyfs DIRECTORY MOUNTPOINT

`mounted()` runs it for a test and `cut()` pulls the plug.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ctypes.util import find_library
from pathlib import Path
from typing import Any

PAGE = 4096
_STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size")
_TIME_FIELDS = ("st_atime", "st_mtime", "st_ctime")


def unavailable() -> str | None:
    """Why no LazyFS can be mounted here, or None."""
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine"
    if find_library("fuse3") is None:
        return "libfuse 3 is missing (scripts/setup installs Debian's fuse3 as root)"
    if os.geteuid() != 0 and not any(
        (Path(directory) / "fusermount3").exists()
        for directory in os.environ.get("PATH", "").split(os.pathsep)
    ):
        return "fusermount3 is missing (Debian's fuse3)"
    return None


class Unsynced:
    """A file's content as written since its last sync, and the pages that differ."""

    def __init__(self, content: bytes) -> None:
        self.content = bytearray(content)
        self.dirty: set[int] = set()


def _operations() -> Any:  # mfusepy's base class is untyped
    # Imported here: mfusepy looks for libfuse when imported.
    import mfusepy  # noqa: PLC0415

    class LazyFS(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self, root: Path) -> None:
            self.root = root
            self.files: dict[str, Unsynced] = {}

        def _real(self, path: str) -> Path:
            return self.root / path.lstrip("/")

        def _unsynced(self, path: str) -> Unsynced:
            if path not in self.files:
                self.files[path] = Unsynced(self._real(path).read_bytes())
            return self.files[path]

        def _sync(self, path: str) -> None:
            unsynced = self.files.pop(path, None)
            if unsynced is None:
                return
            descriptor = os.open(self._real(path), os.O_WRONLY)
            try:
                content = unsynced.content
                for page in sorted(unsynced.dirty):
                    os.pwrite(descriptor, content[page * PAGE : (page + 1) * PAGE], page * PAGE)
                os.ftruncate(descriptor, len(content))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            try:
                stat = os.lstat(self._real(path))
            except FileNotFoundError:
                raise mfusepy.FuseOSError(errno.ENOENT) from None
            attributes = {name: getattr(stat, name) for name in _STAT_FIELDS}
            attributes |= {name: getattr(stat, f"{name}_ns") for name in _TIME_FIELDS}
            if path in self.files:
                attributes["st_size"] = len(self.files[path].content)
            return attributes

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *(entry.name for entry in self._real(path).iterdir())]

        def access(self, path: str, amode: int) -> int:
            if not os.access(self._real(path), amode):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            stat = os.statvfs(self._real(path))
            return {name: getattr(stat, name) for name in dir(stat) if name.startswith("f_")}

        def mkdir(self, path: str, mode: int) -> int:
            self._real(path).mkdir(mode)
            return 0

        def rmdir(self, path: str) -> int:
            self._real(path).rmdir()
            return 0

        def chmod(self, path: str, mode: int) -> int:
            self._real(path).chmod(mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(self._real(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(self._real(path))
            else:
                os.utime(self._real(path), ns=times)
            return 0

        def unlink(self, path: str) -> int:
            self._real(path).unlink()
            self.files.pop(path, None)
            return 0

        def rename(self, old: str, new: str) -> int:
            self._real(old).rename(self._real(new))
            if old in self.files:
                self.files[new] = self.files.pop(old)
            return 0

        def create(self, path: str, mode: int, fi: object = None) -> int:
            return os.open(self._real(path), os.O_RDWR | os.O_CREAT, mode)

        def open(self, path: str, flags: int) -> int:
            return os.open(self._real(path), flags & ~os.O_APPEND)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            if path in self.files:
                return bytes(self.files[path].content[offset : offset + size])
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            unsynced = self._unsynced(path)
            content, end = unsynced.content, offset + len(data)
            if end > len(content):
                content.extend(bytes(end - len(content)))
            content[offset:end] = data
            unsynced.dirty.update(range(offset // PAGE, (end - 1) // PAGE + 1))
            return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            content = self._unsynced(path).content
            if length < len(content):
                del content[length:]
            else:
                content.extend(bytes(length - len(content)))
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            self._sync(path)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    return LazyFS


class Mount:
    """A LazyFS process serving `directory` at `mountpoint`."""

    def __init__(self, directory: Path, mountpoint: Path) -> None:
        self.directory = directory
        self.mountpoint = mountpoint
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.lazyfs", str(self.directory), str(self.mountpoint)]
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LazyFS did not mount {self.mountpoint}")
            time.sleep(0.02)

    def cut(self) -> None:
        """The power cut: everything not synced is lost, and the mount is gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None
        _unmount(self.mountpoint)


def _unmount(mountpoint: Path) -> None:
    for command in (["fusermount3", "-u", "-z"], ["umount", "-l"]):
        with contextlib.suppress(FileNotFoundError):
            subprocess.run([*command, str(mountpoint)], check=False, capture_output=True)
            if not os.path.ismount(mountpoint):
                return


@contextlib.contextmanager
def mounted(directory: Path, mountpoint: Path) -> Iterator[Mount]:
    """A LazyFS mount for the body, cut afterwards whatever happens."""
    mount = Mount(directory, mountpoint)
    mount.start()
    try:
        yield mount
    finally:
        mount.cut()


def main() -> None:
    import mfusepy  # noqa: PLC0415

    directory, mountpoint = sys.argv[1:3]
    mfusepy.FUSE(_operations()(Path(directory)), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
