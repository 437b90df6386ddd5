#!/usr/bin/env python3
"""How long a durable 4 KiB direct write takes on the spool's file system, in the two layouts a
segment can have: reserved but never written (fallocate, the fallback when no spare segment is
ready) and written full of zeros (a spare); and, over written zeros, in the two ways of making
it durable: a write followed by fdatasync, and one write through an O_DSYNC descriptor (what
the relay does). Prints the rate and the latency percentiles of each, one after the other, for
the same number of seconds. These are blocking calls from one thread, so the two ways cost the
same here; the relay gains from O_DSYNC because io_uring issues the write at once while it
hands an fdatasync to a kernel worker thread.

Usage: bench/sync_latency.py DIRECTORY [SECONDS]   (DIRECTORY on the spool's file system;
       tmpfs does not take O_DIRECT)
"""

import mmap
import os
import sys
import time

SEGMENT_BYTES = 256 << 20
WRITE_BYTES = 4096


def run(directory, seconds, layout, dsync):
    path = os.path.join(directory, f"sync-latency-{os.getpid()}-{layout}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if layout == "reserved":
            os.posix_fallocate(fd, 0, SEGMENT_BYTES)
        else:
            zeros = b"\0" * (1 << 20)
            for _ in range(SEGMENT_BYTES >> 20):
                os.write(fd, zeros)
        os.fsync(fd)
        os.close(fd)
        fd = os.open(path, os.O_RDWR | os.O_DIRECT | (os.O_DSYNC if dsync else 0))

        buffer = mmap.mmap(-1, WRITE_BYTES)  # page-aligned, as O_DIRECT requires
        buffer.write(b"x" * WRITE_BYTES)
        latencies = []
        offset = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and offset + WRITE_BYTES <= SEGMENT_BYTES:
            started = time.perf_counter()
            os.pwrite(fd, buffer, offset)
            if not dsync:
                os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
            offset += WRITE_BYTES
    finally:
        os.close(fd)
        os.unlink(path)

    latencies.sort()
    count = len(latencies)

    def percentile(p):
        return latencies[min(count - 1, int(count * p))] * 1000

    way = "O_DSYNC write" if dsync else "write+fdatasync"
    print(f"{layout:>9}, {way:>15}: {count / seconds:7.0f}/s  p50 {percentile(0.5):.3f} ms"
          f"  p99 {percentile(0.99):.3f} ms  p99.9 {percentile(0.999):.3f} ms")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    for layout, dsync in (("reserved", False), ("zeroed", False), ("zeroed", True)):
        run(directory, seconds, layout, dsync)


if __name__ == "__main__":
    main()
