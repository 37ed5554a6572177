"""Which process a job or run record names, and whether it still runs: a pid alone is not
enough, since after a crash or a reboot another process may carry it."""

import os
import socket
from pathlib import Path

PROC = Path("/proc")


def process_identity(pid: int | None = None) -> dict:
    """What tells process `pid` (default: this one) from a later process given the same pid:
    `host`, `pid`, `boot_id` and `pid_start` (its start, in clock ticks after boot), to record
    with a job or a run. Without /proc (macOS) the last two are None."""
    pid = pid or os.getpid()
    stat = _proc_stat(pid)
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "boot_id": _boot_id(),
        "pid_start": stat[1] if stat else None,
    }


def alive(record: dict) -> bool:
    """Whether the process a job or run `record` names still runs.

    After a crash or a reboot another process may carry the recorded pid, so its start time and
    the boot must match too (`process_identity`). A record from before these were kept counts
    the process only if it began before the record's `started` time."""
    pid = record.get("pid")
    if not pid or record.get("host", socket.gethostname()) != socket.gethostname():
        return False
    if not (PROC / "self" / "stat").exists():  # no /proc (macOS): the pid is all there is to go by
        return _exists(pid)
    stat = _proc_stat(pid)
    if stat is None or stat[0] in "ZX":  # gone, or a zombie: ended, its parent not told yet
        return False
    if record.get("pid_start") is None:
        began = _boot_time() + stat[1] / os.sysconf("SC_CLK_TCK")
        return began <= record.get("started", 0.0) + 1.0  # 1 s: the boot time is in whole seconds
    return stat[1] == record["pid_start"] and record.get("boot_id") == _boot_id()


def proven(record: dict) -> bool:
    """Whether the process `record` names runs and is provably the one recorded (same start time
    and boot): the only kind that may be signalled."""
    return record.get("pid_start") is not None and alive(record)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of process `pid`; None if there is none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name before it may hold spaces
    return fields[0], int(fields[19])


def _boot_id() -> str | None:
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def _boot_time() -> float:
    with (PROC / "stat").open() as fh:
        return float(next(line.split()[1] for line in fh if line.startswith("btime ")))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return True
