"""Where a function's start-up goes, from `strace -f -ttt` (issue 21): run

    .venv/bin/python bench/startup.py --profile P --runs 1 \\
        --wrapper "strace -f -ttt -o target/bench/%s.strace" BINARY ...
    .venv/bin/python bench/syscalls.py target/bench/BINARY.strace ...

and get, per trace: the time from exec to the first connection to the Runtime API (init under
strace, slower than without it), the system calls made before it, the files opened before it
(grouped by directory: /etc/ssl/certs is the system's root certificates, read by
rustls-native-certs), the bytes read from them, and the connections made (the Runtime API, the
AWS endpoint). strace slows every system call, so compare the counts, not the times, with the
table of bench/startup.py.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
OPEN = re.compile(r'openat\([^,]+, "([^"]+)"[^)]*\)\s+=\s+(-?\d+)')
READ = re.compile(r"^read\((\d+),.*=\s+(\d+)$")
CONNECT = re.compile(r'connect\((\d+), \{sa_family=AF_INET, sin_port=htons\((\d+)\)')


def summarize(path: str) -> dict:
    t0 = None
    first_connect = None
    calls_before = Counter()
    opened_before = Counter()
    fd_path: dict[tuple[str, int], str] = {}
    bytes_by_dir = Counter()
    connects = []
    with open(path) as fh:
        for raw in fh:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, ts, resumed, name, rest = m.group(1), float(m.group(2)), m.group(3), m.group(4), m.group(5)
            if t0 is None:
                t0 = ts
            call = name or resumed
            text = f"{call}({rest}" if name else rest
            if first_connect is None and name:
                calls_before[call] += 1
            om = OPEN.search(f"openat({rest}") if call == "openat" and name else None
            if om and int(om.group(2)) >= 0:
                p = om.group(1)
                fd_path[(pid, int(om.group(2)))] = p
                if first_connect is None:
                    opened_before[os.path.dirname(p) or p] += 1
            if call == "read" and name:
                rm = READ.match(f"read({rest}")
                if rm and (pid, int(rm.group(1))) in fd_path:
                    bytes_by_dir[os.path.dirname(fd_path[(pid, int(rm.group(1)))])] += int(rm.group(2))
            if call == "connect" and name:
                cm = CONNECT.search(text)
                if cm:
                    connects.append((round((ts - t0) * 1000, 1), int(cm.group(2))))
                    if first_connect is None:
                        first_connect = ts
    return {
        "trace": os.path.basename(path),
        "ms_to_first_connect": None if first_connect is None or t0 is None else round((first_connect - t0) * 1000, 1),
        "syscalls_before_first_connect": sum(calls_before.values()),
        "top_syscalls_before": calls_before.most_common(6),
        "files_opened_before_by_dir": opened_before.most_common(6),
        "bytes_read_by_dir": bytes_by_dir.most_common(4),
        "connects_ms_port": connects[:8],
    }


def main() -> int:
    for path in sys.argv[1:]:
        s = summarize(path)
        print(f"{s['trace']}: first connect at {s['ms_to_first_connect']} ms (under strace), "
              f"{s['syscalls_before_first_connect']} system calls before it")
        print(f"  most made before it: {s['top_syscalls_before']}")
        print(f"  files opened before it, by directory: {s['files_opened_before_by_dir']}")
        print(f"  bytes read, by directory: {s['bytes_read_by_dir']}")
        print(f"  connections (ms, port): {s['connects_ms_port']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
