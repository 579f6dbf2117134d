"""Which pages of a private file mapping this process has written (copied on write).

A page of a ``MAP_PRIVATE`` mapping of a file shows the file until the process first writes
to it; the kernel then gives the process an anonymous copy of that page. The kernel tells the
two apart: the ``PAGEMAP_SCAN`` ioctl of ``/proc/self/pagemap`` (Linux 6.7) lists the pages
that are present or swapped and not file pages, and, on older kernels, each 8-byte entry of
``/proc/self/pagemap`` has bit 63 (present), 62 (swapped) and 61 (file page or shared
anonymous). A page never touched is neither present nor swapped: it shows the file.

When neither can be read, every page counts as written: callers then copy, or drop pages
they need not keep.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading

__all__ = ("PAGE", "discard", "written")

PAGE = mmap.PAGESIZE
_SCAN = 0xC0606610  # PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg)
_IS_FILE, _IS_PRESENT, _IS_SWAPPED = 1 << 2, 1 << 3, 1 << 4
_VEC = 32  # regions asked of the kernel at a time


class _ScanArg(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class _Region(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("start", "end", "categories")]


_ioctl = ctypes.CDLL(None, use_errno=True).ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int

# High byte of a pagemap entry -> 1 if the page is a private copy: (present or swapped) and
# not a file page.
_WRITTEN = bytes(1 if b & 0xC0 and not b & 0x20 else 0 for b in range(256))

_lock = threading.Lock()
_fd = -1
_fd_pid = 0  # the process _fd was opened in: after a fork it would describe the parent
_scan = True  # whether PAGEMAP_SCAN works here


def _pagemap() -> int:
    global _fd, _fd_pid
    with _lock:
        if _fd_pid != os.getpid():
            _fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            _fd_pid = os.getpid()
        return _fd


def _runs(address: int, length: int, first: bool) -> list[tuple[int, int]] | None:
    """Address ranges ``[start, end)`` of the written pages among those overlapping
    ``[address, address + length)`` (the first one only if ``first``); None if unknown."""
    global _scan
    start = address - address % PAGE
    end = -(-(address + length) // PAGE) * PAGE
    try:
        fd = _pagemap()
        if _scan:
            try:
                return _scan_runs(fd, start, end, first)
            except OSError as exc:
                if exc.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                _scan = False
        return _read_runs(fd, start, end, first)
    except OSError:
        return None


def _scan_runs(fd: int, start: int, end: int, first: bool) -> list[tuple[int, int]]:
    regions = (_Region * _VEC)()
    arg = _ScanArg(
        size=ctypes.sizeof(_ScanArg),
        vec=ctypes.addressof(regions),
        vec_len=1 if first else _VEC,
        max_pages=1 if first else 0,
        category_inverted=_IS_FILE,
        category_mask=_IS_FILE,
        category_anyof_mask=_IS_PRESENT | _IS_SWAPPED,
        return_mask=_IS_PRESENT | _IS_SWAPPED,
    )
    runs: list[tuple[int, int]] = []
    while start < end:
        arg.start, arg.end = start, end
        found = _ioctl(fd, _SCAN, ctypes.byref(arg))
        if found < 0:
            raise OSError(ctypes.get_errno(), "PAGEMAP_SCAN failed")
        runs.extend((regions[i].start, regions[i].end) for i in range(found))
        if (first and runs) or arg.walk_end <= start:
            break
        start = arg.walk_end
    return runs


def _read_runs(fd: int, start: int, end: int, first: bool) -> list[tuple[int, int]]:
    pages = (end - start) // PAGE
    data = os.pread(fd, 8 * pages, 8 * (start // PAGE))
    if len(data) != 8 * pages:
        raise OSError(errno.EIO, "short read of /proc/self/pagemap")
    flags = data[7::8].translate(_WRITTEN)  # one byte a page (entries are little-endian)
    runs: list[tuple[int, int]] = []
    i = flags.find(1)
    while i >= 0:
        j = flags.find(0, i)
        j = pages if j < 0 else j
        runs.append((start + i * PAGE, start + j * PAGE))
        if first:
            break
        i = flags.find(1, j)
    return runs


def written(address: int, length: int) -> bool:
    """Whether this process wrote any page overlapping ``[address, address + length)`` of a
    private file mapping (True when that cannot be told)."""
    runs = _runs(address, length, True)
    return runs is None or bool(runs)


def discard(mapping: mmap.mmap, address: int, offset: int, length: int) -> None:
    """Drop this process's copies of the pages of ``mapping`` (a private file mapping that
    starts at ``address``) overlapping ``[offset, offset + length)``: they show the file again.
    """
    first = offset - offset % PAGE
    last = min(len(mapping), -(-(offset + length) // PAGE) * PAGE)
    runs = _runs(address + first, last - first, False)
    if runs is None:
        runs = [(address + first, address + last)]
    for start, end in runs:
        mapping.madvise(mmap.MADV_DONTNEED, start - address, end - start)
