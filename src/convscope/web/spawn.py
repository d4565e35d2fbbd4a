"""Processes a server can end at any moment: the answer pool's launch and stop (web/pool.py).

    with spec_file(spec) as path:                  # the network's weights, for the initializer
        executor = ProcessPoolExecutor(n, mp_context=SpawnContext(), initializer=..., initargs=(path,))
    stop_executor(executor)                        # SIGKILL every process it launched, reap them

ProcessPoolExecutor knows a process only once its launch has returned, and its shutdown()
waits on a lock held during a launch; with the weights in initargs a launch returned only
after the new process had imported torch and read them. SIGTERM then hung the server for
good (issue 22). Here a launch is quick (a path, not the weights), each process is known
from the moment it has a pid, and stopping never takes the executor's locks on the
caller's thread.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterator

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
END_WAIT_S = 2.0  # how long stop_executor waits for a launching process's pid, then for it to be gone


@contextlib.contextmanager
def spec_file(spec: dict[str, Any]) -> Iterator[str]:
    """The spec (the network's weights) in a private temporary file while the processes start.

    Not in initargs: a spawn launch writes its arguments into a pipe to the new process and
    returns only once that process has imported torch and read them all (the pipe holds 64
    KiB; lenet5's weights are 250 KiB), holding the executor's lock. A process killed then
    left that write, the lock and the server's exit waiting for good: the parent holds the
    pipe's other end itself. A path launches in milliseconds."""
    import json
    import tempfile

    # the weights as the safetensors bytes they are, the rest as JSON: never pickle
    fd, path = tempfile.mkstemp(prefix="convscope-answer-", suffix=".json")  # 0600
    weights = path[:-len(".json")] + ".safetensors"
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({k: v for k, v in spec.items() if k != "weights"}, f)
        wfd = os.open(weights, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(wfd, "wb") as f:
            f.write(spec["weights"])
        yield path
    finally:
        for name in (path, weights):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def read_spec_file(path: str) -> dict[str, Any]:
    """The spec `spec_file` wrote to `path` (in the new process)."""
    import json

    with open(path) as f:
        spec = json.load(f)
    with open(path[:-len(".json")] + ".safetensors", "rb") as f:
        spec["weights"] = f.read()
    return spec


def stop_executor(executor: ProcessPoolExecutor) -> None:
    """End a pool's processes now, also one still being launched, and reap them.

    Never executor.shutdown() on this thread: it takes the lock that submit() holds while
    a process is launched, and a spawn launch waits until the new process has imported
    torch and read the network's weights (seconds). That waited for good when the server
    was asked to stop during its start. The processes are ended by pid instead (they ignore
    SIGTERM and SIGINT, see web/pool.py's _init), then the executor is told, off this thread."""
    context = getattr(executor, "_mp_context", None)  # no public way to the processes before 3.14
    launches = context.close() if isinstance(context, SpawnContext) else []
    if launches is None:  # another thread stops it (close() and a failed batch, at once)
        return
    deadline = time.monotonic() + END_WAIT_S
    pids = [pid for pid in (launch.wait_pid(deadline) for launch in launches) if pid is not None]
    pids += [p.pid for p in list((getattr(executor, "_processes", None) or {}).values()) if p.pid not in pids]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The executor's own clean-up (its manager thread, its queues' semaphores) done before
    # this returns: finished later in a thread, it raced the exit ("leaked semaphore").
    # (not cancel_futures: a cancelled answer raised CancelledError in its batch, a 500; the
    # processes are gone, so the executor fails what is pending with BrokenProcessPool)
    shutdown = threading.Thread(target=executor.shutdown, kwargs={"wait": True},
                                name="convscope-pool-shutdown", daemon=True)
    shutdown.start()
    for launch in launches:
        launch.reap(deadline + END_WAIT_S)
    shutdown.join(END_WAIT_S)


class SpawnContext(multiprocessing.context.SpawnContext):
    """The spawn start method, keeping each answer process from the moment it is launched,
    so _stop can end one whose launch has not returned yet (ProcessPoolExecutor lists a
    process only after its start() returned), and refusing new ones once closed."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._launches: list[Launch] = []
        self._closed = False

    def Process(self, *args: Any, **kwargs: Any) -> "_AnswerProcess":  # noqa: N802 - multiprocessing's name
        return _AnswerProcess(self, *args, **kwargs)

    def launch(self, process_obj: Any) -> "Launch":
        with self._lock:
            if self._closed:
                raise RuntimeError("the answer pool is stopping")
            launch = Launch()
            self._launches.append(launch)
        launch.popen = _LaunchingPopen(process_obj, launch)
        return launch

    def close(self) -> list["Launch"] | None:
        """No process starts after this; the ones launched or being launched (None when
        closed before: its processes are someone else's to end)."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            return list(self._launches)


class _AnswerProcess(multiprocessing.context.SpawnProcess):
    """A spawn process launched through its SpawnContext (which the child never sees)."""

    def __init__(self, context: SpawnContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context = context

    def _Popen(self, process_obj: Any) -> Any:  # noqa: N802 - called as self._Popen(self) by start()
        return self._context.launch(process_obj).popen

    def __getstate__(self) -> dict[str, Any]:  # pickled into the child: without the context
        state = dict(self.__dict__)
        state.pop("_context", None)
        return state


class Launch:
    """One answer process as _stop sees it: its pid as soon as it exists."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.popen: Any = None
        self.done = threading.Event()  # the launch returned (or failed)

    def wait_pid(self, deadline: float) -> int | None:
        while self.pid is None and not self.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)  # between the launch's start and the process's fork: pickling, ms
        return self.pid

    def reap(self, deadline: float) -> None:
        """Collect the ended process's exit status (if its Process object has not), so no
        zombie is left to a parent that exits next."""
        while self.pid is not None and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (the executor joined it)
                return
            if pid:
                if self.popen is not None:  # so its Process object knows it has ended
                    self.popen.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.01)


def _spawn_popen_class() -> type:
    from multiprocessing.popen_spawn_posix import Popen

    class LaunchingPopen(Popen):
        """multiprocessing's spawn Popen that tells its Launch the pid the moment it has one."""

        def __init__(self, process_obj: Any, launch: Launch) -> None:
            self._launch_record = launch
            try:
                super().__init__(process_obj)
            finally:
                launch.done.set()

        def __setattr__(self, name: str, value: Any) -> None:
            super().__setattr__(name, value)
            if name == "pid":
                self._launch_record.pid = value
    return LaunchingPopen


_LaunchingPopen = _spawn_popen_class() if os.name == "posix" else None
