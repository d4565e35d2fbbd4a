"""One Train-tab training at a time: its worker process, its events, and its end.

    trainer = Trainer(on_done=open_run, runs_root="runs", defaults={"threads": 1})
    trainer.start(request)          # a checked TrainRequest (web/training.py checks it)
    trainer.since(seq)              # the events after `seq`; trainer.status()
    trainer.pause() / resume() / stop() / shutdown()

The training runs in its own process (`convscope.web.train_worker`); this relays its
progress lines as events. Pause and resume are cooperative (the worker holds still between
steps), stop is the loop's Ctrl-C (the exact position saved), and the server's shutdown
stops it resumably within STOP_WAIT seconds, then kills it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Callable

from convscope.errors import UserError, one_line
from convscope.train.request import TrainRequest

_TRAINERS: "weakref.WeakSet[Trainer]" = weakref.WeakSet()
BUSY = ("starting", "running", "paused", "stopping")
MAX_EVENTS = 50_000
STOP_WAIT = 2.5       # seconds the server's shutdown waits for a resumable stop before killing
MAX_DETAIL = 300      # characters of a message relayed from the worker


class Trainer:
    """One training process at a time, its events, and what happens when it ends."""

    def __init__(self, on_done: Callable[[str], None] | None = None, *, defaults: dict | None = None) -> None:
        self.defaults = dict(defaults or {})  # e.g. {"threads": 1}: request values a request did not set
        self.on_done = on_done
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.state, self.message, self.run = "idle", "", None
        self.request: TrainRequest | None = None
        self.events: list[dict] = []
        self.seq = 0
        self.stderr_tail: list[str] = []
        _TRAINERS.add(self)

    @property
    def spec(self) -> dict | None:
        return self.request.to_json() if self.request is not None else None

    # events
    def _add(self, event: dict) -> None:
        with self.lock:
            self.seq += 1
            event["seq"] = self.seq
            self.events.append(event)
            if len(self.events) > MAX_EVENTS:
                del self.events[: len(self.events) - MAX_EVENTS]

    def since(self, seq: int) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["seq"] > seq]

    def status(self) -> dict:
        with self.lock:
            return {"state": self.state, "message": self.message, "run": self.run, "spec": self.spec,
                    "seq": self.seq}

    def _set(self, state: str, message: str = "") -> None:
        with self.lock:
            self.state, self.message = state, message
        self._add({"type": "state", "state": state, "message": message, "run": self.run})

    # control
    def busy_message(self) -> str | None:
        """Why a new training cannot start now, or None."""
        if self.state not in BUSY:
            return None
        r = self.request
        return (f"a training is already {self.state} ({r.model if r else '?'} on {r.data if r else '?'} -> "
                f"{self.run}); stop it first, or wait for it to finish: one training at a time")

    def start(self, req: TrainRequest) -> None:
        with self.lock:
            if self.state in BUSY:
                raise UserError(self.busy_message())
            unset = {k: v for k, v in self.defaults.items() if getattr(req, k, 0) is None}
            req = dataclasses.replace(req, **unset)
            self.events, self.request, self.run = [], req, str(req.out)
        self._spawn(req)

    def _spawn(self, req: TrainRequest) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                        env.get("PYTHONPATH", "")] if p)
        self._set("starting", f"starting {req.model_name()} on {req.data_name()}")
        self.proc = subprocess.Popen([sys.executable, "-m", "convscope.web.train_worker",
                                      json.dumps(req.to_json()), str(os.getpid())],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()[:MAX_DETAIL]])[-20:]

    def _read(self, proc: subprocess.Popen) -> None:
        last = None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            last = event
            if event.get("type") in ("hello", "step") and self.state == "starting":
                self._set("running", "training")
            self._add(event)
        code = proc.wait()
        self._finish(last, code)

    def _finish(self, last: dict | None, code: int) -> None:
        kind = (last or {}).get("type")
        if kind == "done":
            # open the run first: "done" is said once the explorer answers with the new weights
            message = f"finished: {self.run}"
            if self.on_done is not None:
                try:
                    opened = self.on_done(self.run)
                    self._add({"type": "opened", "run": self.run, "version": getattr(opened, "version", None)})
                    message += " is open in the explorer"
                except Exception as exc:  # noqa: BLE001  (the training is fine; only the explorer could not load it)
                    self._add({"type": "error", "message": f"trained, but the explorer could not open "
                                                           f"{self.run}: {one_line(exc)[:MAX_DETAIL]}"})
            self._set("done", message)
        elif kind == "stopped":
            self._set("stopped", last.get("message", "stopped"))
        else:
            msg = (last or {}).get("message") if kind == "error" else None
            tail = next((ln for ln in reversed(self.stderr_tail) if ln.strip()), "")
            self._set("error", msg or f"the training process ended with status {code}: {tail}")

    def _signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except (ProcessLookupError, OSError):  # it ended a moment ago; its reader says how
            pass

    def pause(self) -> None:
        with self.lock:
            if self.state != "running" or self.proc is None:
                raise UserError(f"nothing to pause: the training is {self.state}")
            self._signal(signal.SIGUSR1)  # the worker holds still after its step (train_worker.Watch)
        self._set("paused", "paused: resume continues from this step")

    def stop(self) -> None:
        with self.lock:
            if self.state not in ("starting", "running", "paused") or self.proc is None:
                raise UserError(f"nothing to stop: the training is {self.state}")
            self._signal(signal.SIGINT)  # the loop's Ctrl-C: finish the step, save, exit
        self._set("stopping", "stopping: saving the exact position")

    def resume(self) -> None:
        with self.lock:
            state, proc = self.state, self.proc
        if state == "paused" and proc is not None:
            self._signal(signal.SIGUSR2)
            self._set("running", "training")
            return
        if state != "stopped" or not self.run or self.request is None:
            raise UserError(f"nothing to resume: the training is {state}" +
                            (" (start a new one)" if state in ("idle", "done", "error") else ""))
        first = self.request
        self._spawn(TrainRequest(model=first.model, data=first.data, out=first.out, resume=True,
                                 threads=first.threads, device=first.device, pace_ms=first.pace_ms))

    def shutdown(self, wait: float = STOP_WAIT) -> None:
        """The server is stopping: stop the training as the Stop button does (resumable; SIGTERM,
        which the worker takes as one Stop however often it comes, so the SIGINT of a Ctrl-C to
        the whole process group does not count twice); what has not ended `wait` seconds later
        is killed, so this returns within about wait + 0.5 s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


def shutdown_all() -> None:
    """Stop every Train-tab training of this process (the server is stopping); within ~3 s."""
    for trainer in list(_TRAINERS):
        trainer.shutdown()
