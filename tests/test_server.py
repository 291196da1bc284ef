"""The control server cannot be exhausted, and the client trusts only what is the user's own.

In-process servers (small caps and timeouts) for the bounds; child consoles (``lacrimosa up``)
for what needs a process of its own: its memory, its descriptor limit, a kill -9.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from test_cli import CLI, _no_console_left_behind, cli, cli_env, start_console

from lacrimosa.api.client import ControlClient, RemoteError
from lacrimosa.api.server import ControlServer
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import Busy, ConsoleError, exit_code_for
from lacrimosa.engine.paths import socket_path

__all__ = ["_no_console_left_behind"]  # the autouse fixture: consoles started here are stopped

IDLE = '[processes.idle]\ncmd = "sleep 300"\n'


@pytest.fixture
def serve(console: Callable[..., Console]) -> Iterator[Callable[..., ControlServer]]:
    """``serve(start=True, **bounds)`` → a ControlServer over an in-process console."""
    servers: list[ControlServer] = []

    def make(start: bool = True, **bounds: Any) -> ControlServer:
        server = ControlServer(console(IDLE, start=start), **bounds)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def connect(server: ControlServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(server.path))
    return sock


def exchange(sock: socket.socket, payload: bytes) -> dict[str, Any]:
    sock.sendall(payload)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def closed(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (whatever it sent before is read and dropped)."""
    try:
        while chunk := sock.recv(65536):
            del chunk
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_any_json_value_as_op_gets_invalid_request(serve: Callable[..., ControlServer]) -> None:
    server = serve()
    with connect(server) as sock:
        for payload in (
            b'{"op": ["ps"]}',
            b'{"op": {"a": 1}}',
            b'{"op": null}',
            b'{"op": 1.5}',
            b'"ps"',
            b"null",
            b'{"op": ["logs"], "follow": true}',
        ):
            reply = exchange(sock, payload + b"\n")
            assert reply["error"]["code"] == "invalid_request", payload
        assert exchange(sock, b'{"op": "ping"}\n')["ok"]  # the same connection still served
    assert server.stats()["malformed_requests"] == 7


def test_connections_beyond_the_cap_get_busy_and_the_rest_are_served(
    serve: Callable[..., ControlServer],
) -> None:
    server = serve(max_connections=4)
    held = [connect(server) for _ in range(4)]
    try:
        for sock in held:
            assert exchange(sock, b'{"op": "ping"}\n')["ok"]
        with connect(server) as extra:
            reply = json.loads(extra.makefile("rb").readline())
            assert reply["error"]["code"] == "busy"
            assert closed(extra)
        assert exit_code_for("busy") == 6
        with (
            pytest.raises(RemoteError) as refused,
            ControlClient(server.console.home, retry_for=0.2) as client,
        ):
            client.call("ps")
        assert refused.value.code == "busy" and refused.value.exit_code == 6
        # A client that is refused asks again, and gets in once a slot is free.
        results: list[Any] = []

        def ask() -> None:
            with ControlClient(server.console.home) as client:
                results.append(client.call("ping"))

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.3)
        held.pop().close()
        asking.join(10)
        assert results and results[0]["pid"] == os.getpid()
        assert server.stats()["refused_busy"] >= 3
    finally:
        for sock in held:
            sock.close()


def test_idle_connections_are_closed_but_followers_are_not(
    serve: Callable[..., ControlServer],
) -> None:
    server = serve(idle_timeout=0.5)
    with connect(server) as idle, connect(server) as follower:
        assert exchange(follower, b'{"op": "logs", "follow": true}\n')["ok"]
        assert exchange(idle, b'{"op": "ping"}\n')["ok"]
        started = time.monotonic()
        assert closed(idle)
        assert 0.4 < time.monotonic() - started < 5
        time.sleep(0.5)  # the follower has been quiet for longer than the idle timeout
        stats = server.stats()
        assert stats["connections"] == 1 and stats["idle_closed"] == 1
    wait_until(lambda: server.stats()["connections"] == 0)


def test_a_reader_that_stops_reading_is_dropped(serve: Callable[..., ControlServer]) -> None:
    server = serve(send_timeout=0.5)
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Replies the reader never takes: megabytes, far more than the socket buffers hold.
        sock.sendall(b'{"op": "status"}\n' * 3000)
        wait_until(lambda: server.stats()["slow_dropped"] == 1)
    wait_until(lambda: server.stats()["connections"] == 0)


def test_the_console_answers_starting_until_it_has_started(
    serve: Callable[..., ControlServer],
) -> None:
    server = serve(start=False)
    console = server.console
    with connect(server) as sock:
        for op in ("ps", "status", "events", "start", "shutdown"):
            reply = exchange(sock, json.dumps({"op": op, "name": "idle"}).encode() + b"\n")
            assert reply["error"]["code"] == "starting", op
        follow = exchange(sock, b'{"op": "logs", "follow": true}\n')
        assert follow["error"]["code"] == "starting"
        assert exchange(sock, b'{"op": "ping"}\n')["ok"]
    assert exit_code_for("starting") == 6
    with pytest.raises(RemoteError) as starting, ControlClient(console.home, retry_for=0.2) as c:
        c.call("ps")
    assert starting.value.exit_code == 6
    # A client asks again while the console starts, and gets the real answer.
    threading.Timer(0.3, console.start).start()
    with ControlClient(console.home) as client:
        ps = client.call("ps")
    assert [p["name"] for p in ps["processes"]] == ["idle"]
    assert ps["processes"][0]["action_timeout"] > 5


def test_hundreds_of_clients_at_once_are_all_answered(
    serve: Callable[..., ControlServer],
) -> None:
    server = serve(max_connections=16)
    answers: list[Any] = []
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            with ControlClient(server.console.home) as client:
                answers.append(client.call("ping"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and len(answers) == 200


def test_a_full_connection_queue_is_busy_not_no_console(tmp_path: Path) -> None:
    home = tmp_path / ".lacrimosa"
    home.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path(home)))
    listener.listen(0)  # never accepted: the queue fills at once
    queued = []
    try:
        for _ in range(100):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(socket_path(home)))
            except BlockingIOError:
                sock.close()
                break
            queued.append(sock)
        started = time.monotonic()
        with pytest.raises(Busy) as busy:
            ControlClient(home, connect_timeout=0.5)
        assert 0.4 < time.monotonic() - started < 5
        assert busy.value.exit_code == 6 and "busy" in busy.value.message
        result = cli("ps", "--json", "--home", str(home), cwd=tmp_path, timeout=30)
        assert result.returncode == 6, result.stderr
        assert json.loads(result.stderr)["error"]["code"] == "busy"
    finally:
        for sock in queued:
            sock.close()
        listener.close()


def test_an_action_against_a_console_that_stopped_answering_has_a_deadline(
    tmp_path: Path,
) -> None:
    home = tmp_path / ".lacrimosa"
    home.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path(home)))
    listener.listen(4)
    done = threading.Event()

    def hang_after_ps() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as reader:
            reader.readline()  # ps: answered, with a short bound on actions
            ps = {"processes": [{"name": "web", "action_timeout": 0.5}]}
            conn.sendall(json.dumps({"ok": True, "result": ps}).encode() + b"\n")
            reader.readline()  # the restart: never answered
            done.wait(30)

    server = threading.Thread(target=hang_after_ps, daemon=True)
    server.start()
    try:
        started = time.monotonic()
        result = cli("restart", "web", "--home", str(home), cwd=tmp_path, timeout=30)
        # Alive but not answering: timed out (5), not "lost the console" (4).
        assert result.returncode == 5, result.stderr
        assert "did not answer within 5.5s (stopped or overloaded?)" in result.stderr
        assert time.monotonic() - started < 15  # 0.5s + the reply margin, not forever
    finally:
        done.set()
        server.join(10)
        listener.close()


@contextlib.contextmanager
def clients_that_never_read(home: Path, *requests: tuple[int, bytes]) -> Iterator[None]:
    """Connect ``count`` clients per ``(count, request)``, each sending its request and reading
    nothing (with a tiny receive buffer), for as long as the block runs; then hang them up."""
    hogs = []
    try:
        for count, request in requests:
            for _ in range(count):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                hogs.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(str(socket_path(home)))
                sock.sendall(request)
        time.sleep(1.5)  # every reply has filled its connection's buffers by now
        yield
    finally:
        for sock in hogs:
            sock.close()


@dataclass
class ShortOfDescriptors:
    """A console allowed few descriptors (see ``console_short_of_descriptors``)."""

    proc: subprocess.Popen[str]
    held: list[socket.socket] = field(default_factory=list)  # closed on the way out
    stderr: str = ""  # the console's, once it has stopped


@contextlib.contextmanager
def console_short_of_descriptors(folder: Path) -> Iterator[ShortOfDescriptors]:
    """``lacrimosa up --headless`` in ``folder`` with RLIMIT_NOFILE at 48, once it answers;
    shut down (and the sockets in ``held`` closed) on the way out."""
    (folder / "lacrimosa.toml").write_text(IDLE)

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    proc = subprocess.Popen(
        [*CLI, "up", "--headless"],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=few_descriptors,
    )
    console = ShortOfDescriptors(proc)
    try:
        wait_until(lambda: proc.poll() is not None or cli("ps", cwd=folder).returncode == 0)
        assert proc.poll() is None
        yield console
    finally:
        for sock in console.held:
            sock.close()
        if proc.poll() is None:
            cli("shutdown", cwd=folder)
        console.stderr = proc.communicate(timeout=30)[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


FLOOD = f"""
[logs]
budget = "8MiB"

[processes.flood]
cmd = "{sys.executable} -c 'import sys, time\\nfor i in range(100): sys.stdout.write((\\"x\\" * 90 + \\"\\\\n\\") * 1000)\\nsys.stdout.flush(); time.sleep(300)'"
"""


def test_clients_that_never_read_a_million_lines_cost_a_bounded_amount(tmp_path: Path) -> None:
    running = start_console(tmp_path, FLOOD)
    home = tmp_path / ".lacrimosa"
    wait_until(lambda: running.ps()["flood"]["stdout_lines"] == 100_000, timeout=20)
    pid = running.proc.pid
    before = _rss_kib(pid)
    with clients_that_never_read(
        home,
        (10, b'{"op": "logs", "lines": 1000000}\n'),
        (5, b'{"op": "logs", "follow": true, "lines": 1000000}\n'),
    ):
        during = _rss_kib(pid)
        # Others are still served meanwhile.
        assert running.run("ps").returncode == 0
    # Per connection: a send buffer (256 KiB) and a piece or two of 64 KiB; the lines the store
    # holds are the store's. Before, each of these replies was built whole: hundreds of MiB.
    assert during - before < 48 * 1024, (before, during)
    status = json.loads(running.run("status", "--json").stdout)
    wait_until(
        lambda: json.loads(running.run("status", "--json").stdout)["control"]["connections"] <= 1
    )
    assert status["control"]["max_connections"] == 64
    assert _rss_kib(pid) - before < 48 * 1024


JOURNAL = """
[processes.idle]
cmd = "sleep 300"

[sequencer]
udp = "127.0.0.1:0"
capacity = 8192
blob = "24MiB"
"""


def test_clients_that_never_read_100000_events_cost_a_bounded_amount(tmp_path: Path) -> None:
    from lacrimosa.engine.events.frames import encode_frame

    running = start_console(tmp_path, JOURNAL)
    home = tmp_path / ".lacrimosa"
    with ControlClient(home) as client:
        udp = client.call("status")["sequencer"]["udp"]
        host, _, port = udp.rpartition(":")
        # 5,000 binary events of 4,000 bytes: 40 MB of hex, about 45 MB per reply as JSON.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for batch in range(50):
                for i in range(100):
                    sender.sendto(encode_frame(bytes([batch, i]) * 2000), (host, int(port)))
                sent = (batch + 1) * 100
                wait_until(lambda: client.call("status")["sequencer"]["accepted"] >= sent)  # noqa: B023
        # One reply read whole first: the journal's pages are then mapped into the console
        # (they count in its VmRSS, but are the page cache's, not the reply's).
        whole = client.call("events", lines=100_000)
    assert len(whole["events"]) == 5000 and whole["events"][0]["size"] == 4000
    pid = running.proc.pid
    before = _rss_kib(pid)
    with clients_that_never_read(home, (10, b'{"op": "events", "lines": 100000}\n')):
        during = _rss_kib(pid)
        # Others are still served meanwhile, events included.
        assert running.run("ps").returncode == 0
        assert json.loads(running.run("events", "-n", "1", "--json").stdout)["next_seq"] == 5000
    # Per connection: a chunk of 64 events read (256 KiB of records) and a piece of JSON or two
    # (64 KiB); the send buffer is the kernel's. Before, each reply was built whole: ~45 MB of
    # JSON, several times that in Python objects on the way, so these ten took gigabytes.
    assert during - before < 32 * 1024, (before, during)
    wait_until(
        lambda: json.loads(running.run("status", "--json").stdout)["control"]["connections"] <= 1
    )
    assert _rss_kib(pid) - before < 32 * 1024


def test_the_accept_loop_survives_running_out_of_descriptors(tmp_path: Path) -> None:
    path = socket_path(tmp_path / ".lacrimosa")
    with console_short_of_descriptors(tmp_path) as console:
        for _ in range(60):  # more than the console has descriptors left
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(path))
            console.held.append(sock)
        time.sleep(0.5)  # the accept loop meets EMFILE
        for sock in console.held:
            sock.close()
        console.held.clear()
        # It goes on accepting once descriptors are free again.
        wait_until(lambda: cli("ps", cwd=tmp_path).returncode == 0, timeout=15)
        status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
        assert status["control"]["accept_failures"].get("EMFILE", 0) >= 1
    # said once, counted every time
    assert console.stderr.count("accept failed") == 1, console.stderr


def test_the_accept_loop_survives_a_thread_that_cannot_start(
    serve: Callable[..., ControlServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve()
    real_start = threading.Thread.start
    failures = [3]

    def start(self: threading.Thread) -> None:
        if self.name == "lacrimosa-control-conn" and failures[0]:
            failures[0] -= 1
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(3):
        with connect(server) as sock:
            assert json.loads(sock.makefile("rb").readline())["error"]["code"] == "busy"
    with connect(server) as sock:
        assert exchange(sock, b'{"op": "ping"}\n')["ok"]
    assert server.stats()["accept_failures"] == {"thread": 3}


def test_logs_follow_exits_4_when_the_console_dies(tmp_path: Path) -> None:
    running = start_console(tmp_path, '[processes.talk]\ncmd = "echo hi; sleep 300"\n')
    follower = subprocess.Popen(
        [*CLI, "logs", "-f"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "talk | hi\n"
        running.proc.send_signal(signal.SIGKILL)
        _, err = follower.communicate(timeout=15)
        assert follower.returncode == 4, err
        assert "lost the console" in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    running.proc.wait(10)
    # A console that stops on purpose ends a follow with 0.
    again = start_console(tmp_path, '[processes.talk]\ncmd = "echo hi; sleep 300"\n')
    with subprocess.Popen(
        [*CLI, "logs", "-f"], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, text=True
    ) as quiet:
        assert quiet.stdout is not None and quiet.stdout.readline() == "talk | hi\n"
        assert again.run("shutdown").returncode == 0
        assert quiet.wait(15) == 0


def test_a_state_folder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: sleep 300\n")
    home = tmp_path / ".lacrimosa"
    home.mkdir()
    home.chmod(0o777)
    result = cli("up", "--headless", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "refusing the state folder" in result.stderr and "Traceback" not in result.stderr
    assert list(home.iterdir()) == []
    if os.getuid() == 0:  # only root can make a folder another user's
        home.chmod(0o755)
        os.chown(home, 65534, 65534)
        result = cli("up", "--headless", cwd=tmp_path)
        assert result.returncode == 1 and "another user" in result.stderr, result.stderr


def test_a_new_state_folder_is_private_and_ignored_by_git(tmp_path: Path) -> None:
    running = start_console(tmp_path, IDLE)
    home = tmp_path / ".lacrimosa"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / ".gitignore").read_text().splitlines()[-1] == "*"
    assert running.stop() == 0


def test_the_client_trusts_only_a_socket_of_its_own_user(tmp_path: Path) -> None:
    home = tmp_path / ".lacrimosa"
    home.mkdir(mode=0o700)
    path = socket_path(home)
    path.write_text("not a socket")
    with pytest.raises(ConsoleError, match="not a socket"):
        ControlClient(home)
    result = cli("ps", "--home", str(home), cwd=tmp_path)
    assert result.returncode == 1 and "not a socket" in result.stderr
    path.unlink()
    if os.getuid() != 0:
        return  # only root can make a socket another user's
    # Another user's console answering there (its own fake `ps`) is never asked.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    os.chown(path, 65534, 65534)
    try:
        result = cli("ps", "--home", str(home), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "belongs to another user" in result.stderr and result.stdout == ""
    finally:
        listener.close()


def test_logs_in_frames_carry_the_same_lines_as_the_json_reply(
    serve: Callable[..., ControlServer],
) -> None:
    from lacrimosa.api.protocol import PIECE_BYTES
    from lacrimosa.engine.terminal_text import json_text

    server = serve()
    store = server.console.store
    lines = b"".join(b'line %d "q" \\ \xc3\xa9 \xff \x1b[2J\n' % i for i in range(5000))
    store.append("idle", 0, lines[:50_000])
    store.append("other", 1, b"from the other one\n")
    store.append("idle", 1, lines[50_000:] + b"no newline")
    # Both streams end in a partial line: stored now, not by the console's flush timer between
    # two of the replies compared below (next_id differed by one under load).
    store.flush("idle", 0)
    store.flush("idle", 1)
    with ControlClient(server.console.home) as client:
        for name in ("idle", None):
            request = {"name": name, "lines": 100_000}
            reply = client.call("logs", **request)
            frames = list(client.frames("logs", format="jsonl", **request))
            *bodies, (last, tail) = frames
            assert last == {"next_id": reply["next_id"]} and tail == b""
            assert all(len(payload) < 2 * PIECE_BYTES for _, payload in bodies)
            assert len(bodies) > 1  # in bounded pieces
            expected = "".join(json_text(line) + "\n" for line in reply["lines"])
            assert b"".join(payload for _, payload in bodies) == expected.encode()
            text = list(client.frames("logs", format="text", **request))
            assert [
                (header["process"], line)
                for header, payload in text[:-1]
                for line in payload.split(b"\n")[:-1]
            ] == _raw_lines(client, request)
        with pytest.raises(RemoteError, match="format"):
            client.call("logs", name="idle", format="text", raw=True)
        with pytest.raises(RemoteError, match="format"):
            client.call("logs", name="idle", format="html")
        assert client.call("ping")  # the connection is still in step after all those frames


def _raw_lines(client: ControlClient, request: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Each line's process and bytes as written, from a ``raw`` reply."""
    import base64

    return [
        (line["process"], base64.b64decode(line["b64"]) if "b64" in line else line["text"].encode())
        for line in client.call("logs", raw=True, **request)["lines"]
    ]


def test_a_request_of_exactly_the_limit_is_served_and_one_byte_more_is_refused(
    serve: Callable[..., ControlServer],
) -> None:
    from lacrimosa.api.wire import MAX_REQUEST_BYTES

    server = serve()
    head = b'{"op": "ping", "pad": "'
    fits = head + b"x" * (MAX_REQUEST_BYTES - len(head) - 2) + b'"}'
    assert len(fits) == MAX_REQUEST_BYTES
    over = head + b"x" * (MAX_REQUEST_BYTES - len(head) - 1) + b'"}'
    with connect(server) as sock:
        assert exchange(sock, fits + b"\n")["ok"]
        assert exchange(sock, over + b"\n")["error"]["message"] == "request too large"
        sock.sendall(fits)
        sock.shutdown(socket.SHUT_WR)  # a last request without its newline counts the same
        assert json.loads(sock.makefile("rb").readline())["ok"]


def test_a_client_trickling_a_request_loses_its_slot(serve: Callable[..., ControlServer]) -> None:
    server = serve(max_connections=4, request_timeout=0.5, idle_timeout=1.5)
    stop = threading.Event()
    socks = [connect(server) for _ in range(4)]

    def trickle() -> None:  # a space every 0.1 s, never a newline
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b" ")
            stop.wait(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        for sock in socks:
            assert closed(sock)
        assert time.monotonic() - started < 5
        assert server.stats()["slow_requests"] == 4
        with connect(server) as sock:
            assert exchange(sock, b'{"op": "ping"}\n')["ok"]
            # Requests that do complete keep a connection; the idle deadline counts from them.
            time.sleep(1.0)
            assert exchange(sock, b'{"op": "ping"}\n')["ok"]
            started = time.monotonic()
            sock.sendall(b" ")  # begun, never ended: the request deadline, not a fresh idle one
            assert closed(sock)
            assert time.monotonic() - started < 1.4
    finally:
        stop.set()
        thread.join(5)
        for sock in socks:
            sock.close()


def test_a_stopped_console_times_out_rather_than_being_lost(tmp_path: Path) -> None:
    from lacrimosa.engine.errors import TimedOut

    running = start_console(tmp_path, IDLE)
    home = tmp_path / ".lacrimosa"
    running.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TimedOut) as timed_out, ControlClient(home, timeout=1.0) as client:
            client.call("ps")
        assert time.monotonic() - started < 5
        assert timed_out.value.exit_code == 5 and timed_out.value.code == "timeout"
        assert str(timed_out.value) == (
            "the console did not answer within 1s (stopped or overloaded?)"
        )
        assert exit_code_for("timeout") == 5
    finally:
        running.proc.send_signal(signal.SIGCONT)
    assert running.run("ps").returncode == 0


def test_right_after_up_the_cli_waits_for_a_starting_console(tmp_path: Path) -> None:
    from lacrimosa.engine.paths import console_starting

    first = start_console(tmp_path, IDLE)
    home = tmp_path / ".lacrimosa"
    first.proc.kill()  # its socket stays behind, refusing connections
    first.proc.communicate()
    assert socket_path(home).exists() and not console_starting(home)
    for attempt in range(4):
        proc = subprocess.Popen(
            [*CLI, "up", "--headless"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # `up` takes the lock before importing the engine; the stale socket refuses until
            # it binds a new one. A `ps` in that window waits rather than say "no console".
            if attempt % 2:  # else at once: the two interpreters race, `up` starts first
                wait_until(lambda: console_starting(home) or proc.poll() is not None)  # noqa: B023
            result = cli("ps", "--json", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert "idle" in result.stdout
        finally:
            proc.kill()
            proc.communicate()
    # Nothing holds the lock: no console, at once.
    started = time.monotonic()
    result = cli("ps", cwd=tmp_path)
    assert result.returncode == 4 and "no console running" in result.stderr
    assert time.monotonic() - started < 5


def test_out_of_descriptors_a_waiting_client_hears_busy_at_once(tmp_path: Path) -> None:
    home = tmp_path / ".lacrimosa"
    with console_short_of_descriptors(tmp_path) as console:
        held = console.held
        for _ in range(100):  # far more than the console has descriptors left
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(socket_path(home)))
            held.append(sock)
        # The console holds what it could accept; the rest were told busy, not left waiting.
        for sock in held[-20:]:  # beyond the descriptors the console has
            reply = json.loads(sock.makefile("rb").readline())
            assert reply["error"]["code"] == "busy", reply
        started = time.monotonic()
        with (
            pytest.raises(RemoteError) as busy,
            ControlClient(home, retry_for=1.0, timeout=10) as client,
        ):
            client.call("status")
        assert busy.value.code == "busy" and busy.value.exit_code == 6
        assert "out of file descriptors" in str(busy.value)
        assert time.monotonic() - started < 5  # not the 10 s reply deadline
        for sock in held:
            sock.close()
        held.clear()
        wait_until(lambda: cli("ps", cwd=tmp_path).returncode == 0, timeout=15)


FAST_WRITER = f"""
[logs]
budget = "8MiB"

[processes.fast]
cmd = "{sys.executable} -c 'import sys, time\\nline = \\"y\\" * 199 + \\"\\\\n\\"\\nwhile True:\\n    sys.stdout.write(line * 500); sys.stdout.flush(); time.sleep(0.01)'"
"""


def test_slow_readers_of_a_log_being_evicted_pin_a_bounded_amount(tmp_path: Path) -> None:
    running = start_console(tmp_path, FAST_WRITER)
    home = tmp_path / ".lacrimosa"

    def store() -> dict[str, Any]:
        return json.loads(running.run("status", "--json").stdout)["log_store"]

    wait_until(lambda: store()["evicted_blocks"] >= 8, timeout=30)  # full, and turning over
    pid = running.proc.pid
    before = _rss_kib(pid)
    readers: list[socket.socket] = []
    tails: dict[socket.socket, bytes] = {}  # the last bytes read from each
    try:
        peak = 0
        for _ in range(10):
            # Two more readers a second, each with a snapshot of its own (the log turns over
            # faster than that), and each reading 64 KiB a second: never dropped as too slow.
            for _ in range(2):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                readers.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(str(socket_path(home)))
                sock.sendall(b'{"op": "logs", "lines": 1000000}\n')
            for sock in readers:
                if tails.get(sock, b"").endswith(b"\n"):
                    continue  # its reply has ended (lapped over and over, it ends early)
                sock.settimeout(5)
                got = bytearray()
                while len(got) < 64 << 10 and not got.endswith(b"\n"):
                    chunk = sock.recv((64 << 10) - len(got))
                    assert chunk
                    got += chunk
                tails[sock] = bytes(got[-200:])
            peak = max(peak, _rss_kib(pid))
            time.sleep(1)
        status = store()
        # Evicted blocks the replies still hold are within their bound (16 MiB here), so memory
        # is the budget, that bound and the connections' own (Before: each reply held its whole
        # snapshot, long evicted: 20 x 8 MiB and growing.)
        assert status["retired_bytes"] <= status["retired_bound_bytes"] + (8 << 20), status
        assert peak - before < 40 * 1024, (before, peak, status)
        # A reader that lapped learns it at the end of its reply.
        first = readers[0]
        first.settimeout(30)
        data = bytearray(tails[first])
        while not data.endswith(b"\n"):
            chunk = first.recv(1 << 20)
            assert chunk
            data += chunk
        footer = json.loads(b"{" + data[data.rindex(b"]") + 2 : -3] + b"}")  # read from mid-reply
        assert footer["lapped"] > 0, (footer, status)
    finally:
        for sock in readers:
            sock.close()
