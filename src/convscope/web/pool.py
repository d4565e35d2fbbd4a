"""Answer /api/predict batches in worker processes, so one server uses every core.

    pool = AnswerPool(explorer, processes=2)   # starts the processes in the background
    answers = pool.answer(bodies)              # in a batch thread; None: answer in-process

Python runs one thread at a time, and an explorer answer is mostly Python (decode, MNIST
centring, encoding every layer, JSON), so a server process answers on one core however
many it has. The pool keeps that process for HTTP and batching and sends each batch to one
of `processes` answer processes; while one computes a batch, the next batch goes to
another. Each holds a copy of one snapshot of the engine's network (web/snapshot.py: its
weights sent once, as a safetensors file) and answers a batch with the very code the
server process would (`Explorer.answer`), so an answer does not depend on where it was
computed. The server process assigns the input ids and keeps each prepared input with
its snapshot, so /api/layer and /api/gradcam for an answer work as before (they compute
the input again, once).

Until the processes are ready (a few seconds after start), after one of them dies, or
after the Train tab swaps another snapshot in, `answer` returns None and the batch is
answered in the server process while a fresh pool starts.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from convscope.web.answer import Answer
from convscope.web.decode import InputError
from convscope.web.spawn import END_WAIT_S, STOP_SIGNALS, SpawnContext, spec_file, stop_executor

log = logging.getLogger("convscope.web.pool")
ANSWER_TIMEOUT_S = 60.0
RETRY_AFTER_S = 30.0  # after answer processes failed to start

_worker: Any = None  # the engine (web/engine.py Explorer) of an answer process


def default_processes() -> int:
    """Answer processes for `convscope serve`: one per core (at most 4), none on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, 4)


def worker_spec(snap: Any) -> dict[str, Any] | None:
    """What an answer process needs to rebuild snapshot `snap` exactly, or None when it cannot
    (a network that is not in the zoo, e.g. a torchvision one)."""
    from safetensors.torch import save

    from convscope.models import list_models

    name = snap.config.get("model", {}).get("name")
    if name not in set(list_models()):
        return None
    state = {k: v.detach().cpu().contiguous() for k, v in snap.model.state_dict().items()}
    return {"name": name, "kwargs": dict(snap.config["model"].get("kwargs") or {}),
            "weights": save(state), "config": snap.config, "run_dir": snap.run_dir,
            "random_weights": snap.random_weights, "origin": snap.origin, "version": snap.version,
            "threads": torch.get_num_threads()}


def _watch_parent(parent: int) -> None:
    """End this answer process soon after the server process is gone (SIGKILLed, crashed):
    nobody is left to ask it anything. (Not PR_SET_PDEATHSIG: it fires when the *thread*
    that started the process ends, and the pool's start thread ends at once.)"""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def _init(spec: dict[str, Any]) -> None:
    """An answer process: Ctrl-C and SIGTERM are the server's to handle; build the explorer once."""
    global _worker
    # The server ends this process itself (SIGKILL, see _stop) once it has stopped using it;
    # a Ctrl-C to the terminal's process group must not kill it mid-batch or print a
    # KeyboardInterrupt. Both signals were blocked since the spawn (AnswerPool._launch):
    # ignored now, a pending one is dropped when they are unblocked.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="convscope-watch-parent", daemon=True).start()
    # tqdm (which torch.fx's Interpreter opens, disabled, while the layer graph is built) makes
    # a multiprocessing lock, a named semaphore the resource tracker counts: a process that is
    # SIGKILLed never gives it back ("leaked semaphore objects" at the server's exit)
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    from safetensors.torch import load

    from convscope.models import create_model
    from convscope.web.engine import Explorer

    torch.set_num_threads(spec["threads"])
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(load(spec["weights"]))
    _worker = Explorer(model, spec["config"], run_dir=spec["run_dir"], random_weights=spec["random_weights"],
                       origin=spec["origin"], version=spec["version"])


def _init_from_file(path: str) -> None:
    """_init with the spec _boot wrote to `path` (see web/spawn.py's spec_file)."""
    from convscope.web.spawn import read_spec_file

    _init(read_spec_file(path))


def _ready() -> int:
    return os.getpid()


def _answer(bodies: list[dict[str, Any]], ids: list[int]) -> list[tuple]:
    """In an answer process: ("ok", JSON text, x as float32 bytes) or ("error", message, status)."""
    return [("error", str(a), a.status) if isinstance(a, InputError)
            else ("ok", a.json, a.x.numpy().astype(np.float32).tobytes())
            for a in _worker.answer(bodies, ids)]


class AnswerPool:
    """`processes` answer processes for one engine (see the module docstring); they hold a copy
    of one snapshot, and answer only while that snapshot is the engine's."""

    def __init__(self, explorer: Any, processes: int) -> None:
        if processes < 1:
            raise ValueError("an AnswerPool needs at least one process")
        self.explorer = explorer
        self.processes = processes
        self._boots = 0  # pools that became ready
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._booting: ProcessPoolExecutor | None = None  # started, not yet ready
        self._boot_thread: threading.Thread | None = None  # the last thread that ran _boot
        self._model: Any = None  # the snapshot the running processes hold
        self._starting = False
        self._closed = False
        self._unable: Any = None   # the network that cannot be rebuilt in another process
        self._next_try = 0.0       # after a failed start, when to try again
        self._start()

    @property
    def restarts(self) -> int:
        """Pools started after the first (a process died, the network changed)."""
        return max(0, self._boots - 1)

    @property
    def ready(self) -> bool:
        return self._executor is not None and self._model is self.explorer.snapshot

    def status(self) -> dict[str, Any]:
        return {"processes": self.processes, "ready": self.ready, "restarts": self.restarts}

    def answer(self, bodies: list[dict[str, Any]]) -> list[Answer | InputError] | None:
        """Answers for `bodies` computed in an answer process, the inputs kept by the engine;
        None when the pool cannot answer now (not ready, or the engine holds another snapshot)."""
        executor, snap = self._executor, self._model
        if executor is None or snap is not self.explorer.snapshot:
            self._start()
            return None
        ids = self.explorer.new_ids(len(bodies))
        try:
            results = executor.submit(_answer, bodies, ids).result(timeout=ANSWER_TIMEOUT_S)
        except (BrokenProcessPool, RuntimeError, TimeoutError, CancelledError) as exc:  # died, hung, or stopped
            if not self._closed:  # else close() ended it: the server is stopping
                log.warning("an answer process failed (%s); starting new ones", type(exc).__name__)
            self._retire(executor)
            self._start()
            return None
        out: list[Any] = []
        for r, input_id in zip(results, ids):
            if r[0] == "error":
                out.append(InputError(r[1], r[2]))
                continue
            x = torch.from_numpy(np.frombuffer(r[2], dtype=np.float32).copy()).view(1, *snap.input_size)
            self.explorer.remember(input_id, snap, x)
            out.append(Answer(r[1], x, input_id, snap.version))
        return out

    def close(self) -> None:
        """End the answer processes now, also those still being launched, and reap them: the
        server is ending. Safe from any thread, at any moment, more than once; no pool starts
        after it."""
        with self._lock:
            self._closed = True
            executors, self._executor, self._booting = [self._executor, self._booting], None, None
            booting = self._boot_thread
        for executor in executors:
            if executor is not None:
                _stop(executor)
        if booting is not None and booting is not threading.current_thread():
            booting.join(END_WAIT_S)  # it lets go of its executor (and the semaphores) before the exit

    # ---- starting -----------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            unable = self._unable is not None and self._unable is self.explorer.snapshot
            if self._starting or self._closed or unable or time.monotonic() < self._next_try:
                return
            self._starting = True
        threading.Thread(target=self._boot, name="convscope-pool-start", daemon=True).start()

    def _boot(self) -> None:
        self._boot_thread = threading.current_thread()
        model = self.explorer.snapshot
        executor = None
        try:
            spec = worker_spec(model)
            if spec is None:
                log.info("%s is not a zoo network: answering in the server process", self.explorer.name)
                with self._lock:
                    self._unable, self._starting = model, False
                return
            with spec_file(spec) as path:
                executor = ProcessPoolExecutor(self.processes, mp_context=SpawnContext(),
                                               initializer=_init_from_file, initargs=(path,))
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._booting = executor  # close() stops it even before it is ready
                if closed:  # closed while the spec was made: launch nothing
                    raise RuntimeError("the pool was closed")
                pids = self._launch(executor)  # each has read the file
            log.info("%d answer process(es) ready: %s", len(pids), sorted(pids))
        except Exception as exc:  # noqa: BLE001 - the server keeps answering in-process
            if not self._closed:
                log.warning("answer processes did not start (%s: %s); answering in the server process",
                            type(exc).__name__, str(exc)[:200])
            with self._lock:
                self._starting, self._next_try, self._booting = False, time.monotonic() + RETRY_AFTER_S, None
            if executor is not None:  # none of its processes is left running (a no-op after close())
                _stop(executor)
            return
        with self._lock:
            self._starting, self._booting = False, None
            closed = self._closed
            old = None
            if not closed:
                old, self._executor, self._model = self._executor, executor, model
                self._boots += 1
        if old is not None:
            _stop(old)
        if closed:
            _stop(executor)
        elif model is not self.explorer.snapshot:  # swapped while starting: start again
            self._start()

    def _launch(self, executor: ProcessPoolExecutor) -> set[int]:
        """Start the processes and wait until each has run _init: their pids.

        They are started with SIGINT and SIGTERM blocked in this thread: the new processes
        inherit the mask, so a Ctrl-C to the process group while they import torch cannot
        print their tracebacks; _init unblocks them (ignored)."""
        deadline = time.monotonic() + 300
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            futures = [executor.submit(_ready) for _ in range(self.processes)]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        pids: set[int] = set()
        while True:
            pids |= {f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures}
            if len(pids) >= self.processes or self._closed:
                return pids
            # a process that was ready first answered twice; ask again until every one has
            time.sleep(0.05)
            futures = [executor.submit(_ready) for _ in range(self.processes)]

    def _retire(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        _stop(executor)


def _stop(executor: ProcessPoolExecutor) -> None:
    """End a pool's processes now, also one still being launched, and reap them (web/spawn.py:
    never executor.shutdown() on this thread, which waited for good during a launch)."""
    stop_executor(executor)
