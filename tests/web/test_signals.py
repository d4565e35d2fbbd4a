"""A clean end: SIGTERM or Ctrl-C at any moment of `convscope serve` (while it imports,
while its answer processes start, during batches, while the Train tab trains) ends it
within 5 s, leaves no process of its group alive, and prints no traceback and no
"leaked semaphore" warning.

Each server runs in a process group of its own; a process is "left behind" if any member
of that group is still alive (a zombie is not alive: it has ended, and only this
container's init, which reaps nothing, keeps its entry)."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("web"), pytest.mark.slow]

SRC = Path(__file__).resolve().parents[2] / "src"
STOP_WITHIN_S = 5.0  # the promise, measured from the signal
SAID = ("convscope explorer:", "  open http://")  # all a server says, start to end


class Server:
    """`python -m convscope serve ...` in its own process group, its output collected."""

    def __init__(self, *argv: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convscope", "serve", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", **(env or {})))
        self.lines: list[str] = []
        self.url: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.url is None and "open http://" in line:
                self.url = line.split("open ")[1].split()[0]

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(f"serve ended ({self.proc.returncode}) before {what}:\n{self.output}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"serve did not get to {what} within {timeout} s:\n{self.output}")
            time.sleep(0.05)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.load(r)

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self, sig: int = signal.SIGTERM, group: bool = False) -> float:
        """Send `sig`; seconds until the server process ended (the test waits longer, to report)."""
        sent = time.monotonic()
        (os.killpg if group else os.kill)(self.proc.pid, sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"serve did not end within 60 s of {signal.Signals(sig).name}:\n{self.output}")
        return time.monotonic() - sent

    def alive_in_group(self) -> list[str]:
        """The group's members that are still running (not zombies), as 'pid cmdline'."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
                if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    alive.append(f"{entry.name} {cmdline}")
            except (OSError, ValueError):
                continue  # it ended while we looked
        return alive

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def check_clean_end(self, took: float, sig: int = signal.SIGTERM) -> None:
        print(f"ended {took:.2f} s after {signal.Signals(sig).name}")  # pytest -s shows the margin
        time.sleep(0.5)  # the resource tracker notices its parent is gone
        left = self.alive_in_group()
        self.kill()
        assert not left, f"left behind after {signal.Signals(sig).name}: {left}\n{self.output}"
        assert took <= STOP_WITHIN_S, f"took {took:.2f} s to end after {signal.Signals(sig).name}:\n{self.output}"
        assert self.proc.returncode in (0, 130, -sig), self.output
        # nothing but its address: no traceback, no "leaked semaphore", no log of a failed process
        assert all(line.startswith(SAID) for line in self.lines), self.output


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


@needs_proc
@pytest.mark.parametrize("after_s", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_sigterm_at_any_moment_of_the_start_ends_it_cleanly(after_s):
    server = Server("--model", "lenet5", "--port", "0", "--answer-processes", "2")
    time.sleep(after_s)
    took = server.stop()
    server.check_clean_end(took)


@needs_proc
def test_sigterm_while_the_answer_processes_start_and_after_they_are_ready():
    server = Server("--model", "lenet5", "--port", "0", "--answer-processes", "2")
    server.wait_for(lambda: server.url is not None, "printing its address")
    took = server.stop()  # the answer processes are importing torch now
    server.check_clean_end(took)


def _pool_ready(server: Server) -> bool:
    try:
        pool = server.get("/api/health")["batching"]["answer_processes"]
    except OSError:
        return False
    return bool(pool and pool["ready"])


def _hammer(server: Server, stop: threading.Event, answered: list[int]) -> None:
    image = {"image": [[0.0] * 28 for _ in range(28)]}
    while not stop.is_set():
        try:
            status, _ = server.post("/api/predict", image)
        except (OSError, http.client.HTTPException):  # the server is going away: refused, or cut
            return
        answered.append(status)


@needs_proc
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_stop_during_batches_ends_it_cleanly(sig, group):
    """Ctrl-C in a terminal signals the whole group: the answer processes too."""
    server = Server("--model", "lenet5", "--port", "0", "--answer-processes", "2")
    server.wait_for(lambda: server.url is not None and _pool_ready(server), "its answer processes being ready")
    stop, answered = threading.Event(), []
    clients = [threading.Thread(target=_hammer, args=(server, stop, answered), daemon=True) for _ in range(4)]
    for c in clients:
        c.start()
    server.wait_for(lambda: len(answered) >= 20, "answering batches")
    took = server.stop(sig, group=group)
    stop.set()
    assert set(answered) == {200}, (answered[-3:], server.output)
    server.check_clean_end(took, sig)
    assert server.proc.returncode == (130 if sig == signal.SIGINT else 0)


@needs_proc
def test_sigterm_while_the_train_tab_trains_ends_the_training_too(tmp_path):
    server = Server("--model", "lenet5", "--port", "0", "--answer-processes", "0",
                    env={"CONVSCOPE_RUNS": str(tmp_path / "runs")})
    server.wait_for(lambda: server.url is not None, "printing its address")
    status, body = server.post("/api/train/start", {"model": "lenet5", "data": "synthetic", "epochs": 100,
                                                    "pace_ms": 20, "out": "t"})  # under CONVSCOPE_RUNS
    assert status == 202, body
    assert json.loads(body)["state"] in ("starting", "running")
    server.wait_for(lambda: server.get("/api/train/status")["state"] == "running", "training")
    took = server.stop()
    server.check_clean_end(took)


def test_a_busy_port_is_one_line_and_no_child_traceback():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "convscope", "serve", "--model", "lenet5", "--port", str(port),
                               "--answer-processes", "2"], capture_output=True, text=True, timeout=180,
                              env=dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1"))
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("convscope serve: error:") and "--port" in done.stderr


def _answer_processes_of_this_process() -> list[int]:
    """Running (not zombie) children of this test process that are multiprocessing spawns."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@needs_proc
@pytest.mark.parametrize("after_s", [0.0, 0.3, 1.5, 4.0])
def test_closing_the_pool_at_any_moment_of_its_start_ends_and_reaps_its_processes(after_s, tmp_path, monkeypatch):
    """The hang of issue 22 was here: close() while the pool's start thread was launching a
    process waited for good. Now it returns, no answer process is left, nor the spec file."""
    import tempfile

    from convscope.web import Explorer
    from convscope.web.pool import AnswerPool

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the pool writes its spec file
    pool = AnswerPool(Explorer.from_name("lenet5"), 2)
    time.sleep(after_s)
    done = threading.Event()
    closer = threading.Thread(target=lambda: (pool.close(), done.set()), daemon=True)
    closer.start()
    assert done.wait(60), "AnswerPool.close() did not return"
    deadline = time.monotonic() + 10
    while _answer_processes_of_this_process() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _answer_processes_of_this_process() == []
    time.sleep(0.5)  # the start thread sees the pool closed and removes its spec file
    assert list(tmp_path.glob("convscope-answer-*")) == []
