"""`kepu run`'s children (workers, scheduler): restarted when one dies, never outliving it.

Each child runs in its own process group, so the whole group (a Celery worker and its pool
processes) is signalled at once, and asks the kernel for SIGKILL when `kepu run` dies
(``PR_SET_PDEATHSIG``), so even a ``kill -9`` of `kepu run` leaves no worker and no second
scheduler behind. A child that exits while `kepu run` keeps running is restarted with a logged
warning (after a growing pause when it keeps dying at once). Stdlib only; Linux for the death
signal (elsewhere children are still stopped when `kepu run` stops normally).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess  # nosec B404  # starts our own Celery processes (fixed argv from review.cli)
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: A child that ran at least this long before dying is restarted at once.
HEALTHY_AFTER = 60.0
MAX_PAUSE = 30.0


def _death_signal_setter() -> Callable[[], None] | None:
    """A function for the forked child that asks for SIGKILL when its parent dies (Linux)."""
    if not hasattr(os, "fork") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        # Runs in the child between fork and exec; the death signal survives the exec.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call: never run orphaned
            os._exit(1)

    return set_death_signal


@dataclass
class Child:
    """One supervised process: its name, command line and the running process."""

    name: str
    argv: Sequence[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = 1.0
    restarts: int = 0
    history: list[int] = field(default_factory=list)


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True when the process has ended, without reaping it (its group id stays reserved)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


class Supervisor:
    """Starts the children, restarts any that dies, and stops them all (with their groups)."""

    def __init__(
        self,
        children: Mapping[str, Sequence[str]],
        *,
        env: Mapping[str, str],
        echo: Callable[[str], None] = print,
        interval: float = 1.0,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in children.items()]
        self.env = dict(env)
        self.echo = echo
        self.interval = interval
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="kepu-supervisor", daemon=True)
        self._death_signal = _death_signal_setter()

    def start(self) -> None:
        """Start every child and the watcher thread."""
        with self._lock:
            for child in self.children:
                self._spawn(child)
        self._thread.start()

    def _spawn(self, child: Child) -> None:
        # Fixed argv (this interpreter, our Celery app, generated names): no user input.
        child.proc = subprocess.Popen(  # nosec B603
            list(child.argv),
            env=self.env,
            start_new_session=True,  # its own process group: stop it with all its pool
            preexec_fn=self._death_signal,  # noqa: PLW1509  (one prepared prctl call)
        )
        child.started_at = time.monotonic()
        self.echo(f"started {child.name} (pid {child.proc.pid})")

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval):
            for child in self.children:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    proc = child.proc
                    if proc is None or not _exited(proc):
                        continue
                    _kill_group(proc.pid)  # its orphaned pool processes, if any
                    code = proc.wait()
                    child.history.append(code)
                    ran = time.monotonic() - child.started_at
                    child.pause = 1.0 if ran >= HEALTHY_AFTER else min(child.pause * 2, MAX_PAUSE)
                    pause = 0.0 if ran >= HEALTHY_AFTER else child.pause
                    child.restarts += 1
                    message = (
                        f"WARNING: {child.name} (pid {proc.pid}) exited with status {code}; "
                        f"restarting it in {pause:.0f} s (restart {child.restarts})"
                    )
                    log.warning("%s", message)
                    self.echo(message)
                if self._stopping.wait(pause):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._spawn(child)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child's group, wait, then SIGKILL whatever is left."""
        with self._lock:
            self._stopping.set()
            procs = [c.proc for c in self.children if c.proc is not None]
        for proc in procs:
            if proc.returncode is None:
                _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _kill_group(proc.pid)  # the rest of the group (and the child, if still running)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("child %s did not stop", proc.pid)
