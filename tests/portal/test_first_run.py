"""A first `make run` (issue 13, decision 0028): the printed logins and the links in emails use the
address given with BIND, emails go to files rather than over the logins, the logins come last,
and Ctrl-C stops the web server, the worker and beat and exits 0 — with no `make: *** Error`.

The portal runs for real (migrate, load_demo, collectstatic, gunicorn, Celery worker and beat) from
a copy of the checkout in a temporary folder, so its SQLite database, broker folders, mail and
logs are its own; it uses this checkout's virtualenv and skips `make install`."""

import email
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ["manage.py", "Makefile", "pyproject.toml", "requirements.lock", "scripts", "portal", "billing",
            "promotions", "templates", "static"]
STARTUP_TIMEOUT = 45  # seconds; a first run takes about ten


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """One copy for the module: whichever test starts second finds the demo loaded (faster)."""
    root = tmp_path_factory.mktemp("first-run") / "portal"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in CHECKOUT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            shutil.copy2(src, root / name)
    return root


def run_env(bind: str) -> dict:
    """What a person's shell would hold: no service URLs (SQLite under var/, the filesystem
    broker), no mail backend or SITE_URL, only BIND and this checkout's virtualenv."""
    drop = {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "MAIL_BACKEND", "MAIL_FILE_PATH", "SITE_URL",
            "CELERY_TASK_ALWAYS_EAGER", "DATABASE_REPLICA_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "BIND": bind, "VENV": str(ROOT / ".venv"), "WEB_WORKERS": "1", "DEMO_SIMULATOR": "1"}


class Console:
    """A process started like a job in a terminal (its own process group) and what it prints."""

    def __init__(self, args, *, cwd: Path, env: dict):
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> int:
        """The index of the first line matching `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(list(self.lines)):
                if re.search(pattern, line):
                    return i
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.text}"
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} after {timeout} s:\n{self.text}")

    def ctrl_c(self, timeout: float = 30) -> int:
        """What a terminal does on Ctrl-C: SIGINT to every process of the job."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, response.read().decode()


def mail_links(mail_dir: Path, timeout: float) -> set[str]:
    """The sites the emails link to, once the worker has written some to files (Django's file
    backend: messages one after another, each followed by a line of dashes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = set()
        for path in mail_dir.glob("*.log"):
            for raw in path.read_text(errors="replace").split("\n" + "-" * 79 + "\n"):
                for part in email.message_from_string(raw.strip()).walk():
                    if part.get_content_type() == "text/html":
                        html = part.get_payload(decode=True).decode()
                        links |= set(re.findall(r'href="(https?://[^/"]+)/', html))
        if links:
            return links
        time.sleep(0.25)
    raise AssertionError(f"no email with a link in {mail_dir} after {timeout} s")


def test_run_prints_the_bind_address_keeps_mail_off_the_console_and_ctrl_c_exits_0(checkout):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # given a first run of the portal on another address than the default
    console = Console([str(checkout / "scripts" / "run.sh")], cwd=checkout, env=run_env(f"127.0.0.1:{port}"))
    try:
        # then the logins name that address, and they come last: after the web server started
        demo = console.wait_for(r"^Demo login: ", STARTUP_TIMEOUT)
        staff = console.wait_for(r"^Staff login: ", 5)
        assert console.lines[demo] == f"Demo login: {base}/  user demo_admin  password demo-pass-2026"
        assert console.lines[staff] == f"Staff login: {base}/admin/  user support  password demo-pass-2026"
        assert console.wait_for(r"Listening at: ", 1) < demo
        assert ":8000" not in console.text
        # and the console says where mail goes, and shows none
        assert "emails are written to var/mail/ as files, not sent" in console.text
        # and the portal answers there
        status, page = get(f"{base}/login/")
        assert status == 200 and 'name="username"' in page
        # and the notifications the demo queued are emailed to files, linking to that address
        assert mail_links(checkout / "var" / "mail", timeout=30) == {base}
        assert not any(line.startswith(("Subject:", "Content-Type:")) for line in console.lines)
        assert (checkout / "var" / "log" / "worker.log").read_text().count("succeeded") > 0

        # when Ctrl-C is pressed
        code = console.ctrl_c()
        # then web, worker and beat are stopped and the run exits 0
        assert code == 0, console.text
        assert console.lines[-1] == "stopped web, worker and beat"
        assert group_is_gone(console.proc.pid)
    finally:
        console.kill()


class Terminal(Console):
    """A command run in a pseudo-terminal, as a person runs it: its own session with the pty as
    its controlling terminal, so Ctrl-C (the byte 0x03) is the terminal's SIGINT to whichever
    process group is in the foreground — not a signal the test picks a target for."""

    def __init__(self, args, *, cwd: Path, env: dict):
        import fcntl
        import pty
        import termios

        self.master, slave = pty.openpty()

        def controlling_tty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=controlling_tty)
        os.close(slave)
        self.buffer = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the terminal closed: every process left it
                return
            if not chunk:
                return
            self.buffer += chunk.decode(errors="replace").replace("\r\n", "\n")

    @property
    def lines(self) -> list[str]:
        return self.buffer.splitlines()

    def ctrl_c(self, timeout: float = 30) -> int:
        os.write(self.master, b"\x03")
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self):
        super().kill()
        try:
            os.close(self.master)
        except OSError:
            pass


def test_make_run_in_a_terminal_ctrl_c_exits_0(checkout):
    port = free_port()
    # given `make run` with an address, typed in a terminal (the virtualenv is this checkout's: no install)
    console = Terminal(["make", "-o", "install", "run", f"BIND=127.0.0.1:{port}"], cwd=checkout,
                       env=run_env(f"127.0.0.1:{port}"))
    try:
        demo = console.wait_for(r"^Demo login: ", STARTUP_TIMEOUT)
        assert console.lines[demo].startswith(f"Demo login: http://127.0.0.1:{port}/  user demo_admin")
        # when Ctrl-C is pressed
        code = console.ctrl_c()
        # then the run stopped cleanly, make reports no failed recipe, and `make run` exits 0
        assert "stopped web, worker and beat" in console.text, console.text
        assert "make: ***" not in console.text and "Error" not in console.text
        assert code == 0, console.text
        assert group_is_gone(console.proc.pid)
    finally:
        console.kill()
