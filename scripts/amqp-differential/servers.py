"""The two brokers under comparison, each started on free ports in a scratch
directory and stopped (with everything it started) whatever happens.

RabbitMQ: Debian's rabbitmq-server, run as root through
/usr/lib/rabbitmq/bin/rabbitmq-server (the /usr/sbin wrapper switches to
the rabbitmq user), with its own node name, Erlang cookie, mnesia and log
directories, distribution port and epmd (on a port of its own, so no other
Erlang node on the machine is involved).
ringmq: the binary given, `serve` with its ready line on stdout.
"""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pika

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# The version the allow-list was made against.
RABBITMQ_VERSION = "3.10.8"
START_TIMEOUT_S = 180


class ServerError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distinct_free_ports(n: int) -> list:
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def amqp_answers(port: int) -> bool:
    """Whether a guest/guest AMQP connection opens on `port`."""
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=2,
        heartbeat=0,
    )
    try:
        pika.BlockingConnection(params).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def stop_process(proc: subprocess.Popen, name: str, grace_s: float):
    """SIGTERM, then SIGKILL to its process group (it runs in a session of
    its own, so the group is exactly what it started)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop within {grace_s:.0f}s: killing its process group", flush=True)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def ensure_rabbitmq_installed():
    if Path(RABBITMQ_SERVER).exists():
        return
    print("  rabbitmq-server missing: apt-get install -y rabbitmq-server", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "rabbitmq-server"], env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "rabbitmq-server"], env=env, check=True)
    if not Path(RABBITMQ_SERVER).exists():
        raise ServerError(f"{RABBITMQ_SERVER} still missing after installing rabbitmq-server")


def rabbitmq_version() -> str:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"], capture_output=True, text=True, check=False
    )
    return r.stdout.strip() or "unknown"


class RabbitMQ:
    name = "rabbitmq"

    def __init__(self, scratch: Path):
        self.dir = scratch / "rabbitmq"
        self.proc = None
        self.epmd = None
        self.port = None

    def start(self):
        ensure_rabbitmq_installed()
        version = rabbitmq_version()
        if not version.startswith(RABBITMQ_VERSION):
            print(f"  note: rabbitmq-server {version}; the allow-list was made against {RABBITMQ_VERSION}", flush=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(f"RINGMQDIFF{os.getpid()}{int(time.time())}")
        cookie.chmod(0o600)
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.port, dist_port, epmd_port = distinct_free_ports(3)
        env = dict(
            os.environ,
            HOME=str(home),
            RABBITMQ_NODENAME=f"ringmqdiff-{os.getpid()}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            ERL_EPMD_PORT=str(epmd_port),
        )
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        self.epmd = subprocess.Popen(
            [epmd, "-port", str(epmd_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not port_open(epmd_port):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"epmd on port {epmd_port} did not start")
            time.sleep(0.05)
        self.stdout_path = self.dir / "server.out"
        with open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [RABBITMQ_SERVER],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        print(f"  rabbitmq starting: node {env['RABBITMQ_NODENAME']} amqp 127.0.0.1:{self.port}", flush=True)

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"rabbitmq-server exited ({self.proc.returncode}):\n{tail(self.stdout_path)}")
            if port_open(self.port) and amqp_answers(self.port):
                return
            if time.monotonic() > deadline:
                raise ServerError(f"rabbitmq did not accept AMQP within {START_TIMEOUT_S}s:\n{tail(self.stdout_path)}")
            time.sleep(0.5)

    def stop(self):
        stop_process(self.proc, "rabbitmq-server", 60)
        stop_process(self.epmd, "epmd", 5)


class Ringmq:
    name = "ringmq"

    def __init__(self, scratch: Path, binary: str):
        self.dir = scratch / "ringmq"
        self.binary = binary
        self.proc = None
        self.port = None
        self.ready = threading.Event()

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.dir / "server.out"
        self.stderr_path = self.dir / "server.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "serve",
                    "--data-dir",
                    str(self.dir / "data"),
                    "--listen",
                    "127.0.0.1:0",
                    "--amqp-listen",
                    "127.0.0.1:0",
                    "--metrics",
                    "off",
                    "--cores",
                    "2",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        with open(self.stdout_path, "wb") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                text = line.decode(errors="replace")
                if text.startswith("ringmq ready") and not self.ready.is_set():
                    for word in text.split():
                        if word.startswith("amqp="):
                            self.port = int(word.rsplit(":", 1)[1])
                    self.ready.set()

    def wait_ready(self):
        deadline = time.monotonic() + 60
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None:
                raise ServerError(f"ringmq exited ({self.proc.returncode}):\n{tail(self.stderr_path)}")
            if time.monotonic() > deadline:
                raise ServerError(f"no ready line from ringmq within 60s:\n{tail(self.stderr_path)}")
        if self.port is None:
            raise ServerError(f"ringmq's ready line names no amqp= address: see {self.stdout_path}")
        print(f"  ringmq ready: amqp 127.0.0.1:{self.port}", flush=True)

    def stop(self):
        stop_process(self.proc, "ringmq", 30)
