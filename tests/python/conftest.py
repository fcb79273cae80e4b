"""Fixtures that run a real `highside serve` for the OpenAI SDK integration tests.

Environment:
  HIGHSIDE_BIN         server binary (default: <repo>/target/debug/highside)
  HIGHSIDE_TEST_MODEL  GGUF model path (default: last stdout line of <repo>/scripts/fetch-model)
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = "smollm2"
READY_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 300.0


def _binary() -> Path:
    return Path(os.environ.get("HIGHSIDE_BIN") or REPO / "target" / "debug" / "highside")


def _model() -> Path:
    env = os.environ.get("HIGHSIDE_TEST_MODEL")
    if env:
        return Path(env)
    out = subprocess.run(
        [str(REPO / "scripts" / "fetch-model")],
        check=True, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    ).stdout
    lines = out.strip().splitlines()
    assert lines, "scripts/fetch-model printed nothing"
    return Path(lines[-1])


def _run_cli(binary: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`highside {' '.join(args)}` exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc.stdout


def _printed_key(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("HIGHSIDE_API_KEY="), f"no key printed: {stdout}"
    return last.split("=", 1)[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def _read_port(port_file: Path):
    try:
        text = port_file.read_text().strip()
    except OSError:
        return None
    # The file may be observed mid-write; only accept a complete port number.
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


class Highside:
    """A running `highside serve` on an ephemeral port, with its own data directory."""

    def __init__(self, data: Path, env=None):
        self.binary = _binary()
        self.data = data
        self.log_path = data.parent / f"{data.name}.log"
        port_file = data / "port"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data", str(data),
             "--listen", "127.0.0.1:0", "--port-file", str(port_file)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Tests fail authentication on purpose, from one address: the per-address
            # throttle is tested on its own, with a lower allowance.
            env={**os.environ, "HIGHSIDE_AUTH_FAILURES_PER_MINUTE": "1000000", **(env or {})},
        )
        # Poll the readiness condition (port file written AND /health/ready == 200), bounded.
        deadline = time.monotonic() + READY_TIMEOUT_S
        port = None
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                pytest.fail(f"server exited early with {self.proc.returncode}\n{_tail(self.log_path)}")
            if port is None:
                port = _read_port(port_file)
            if port is not None and _ready(port):
                break
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"server not ready within {READY_TIMEOUT_S:.0f}s "
                            f"(port={port})\n{_tail(self.log_path)}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{port}"

    def cli(self, key: str, *args: str) -> str:
        return _run_cli(self.binary, "admin", "--url", self.url, "--api-key", key, *args)

    def user_key(self, operator_key: str, clearance: str, name: str = "sdk") -> str:
        """A new agency and a user with the `user` role and `clearance`; their key."""
        import json
        agency = json.loads(self.cli(operator_key, "agencies", "create",
                                     "--name", f"{name} agency", "--branch", "executive"))
        user = json.loads(self.cli(operator_key, "users", "create", "--agency", agency["id"],
                                   "--name", name, "--clearance", clearance,
                                   "--nationality", "USA"))
        return _printed_key(self.cli(operator_key, "keys", "create", "--user", user["id"],
                                     "--name", "pytest"))

    def stop(self):
        """SIGTERM, and the exit must be clean."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {SHUTDOWN_TIMEOUT_S:.0f}s of SIGTERM\n"
                        f"{_tail(self.log_path)}")
        self.log.close()
        assert rc == 0, f"server exited with {rc} after SIGTERM\n{_tail(self.log_path)}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def init_data(tmp: Path, name: str, model=None, label: str = "SECRET//NOFORN"):
    """`highside init` in tmp/name (and import the demo model as smollm2); the operator key."""
    binary = _binary()
    if not binary.is_file():
        pytest.fail(f"server binary not found: {binary} (build it or set HIGHSIDE_BIN)")
    data = tmp / name
    operator_key = _printed_key(_run_cli(binary, "init", "--data", str(data)))
    if model is not None:
        _run_cli(binary, "models", "import", str(model), "--name", MODEL_ID, "--data", str(data),
                 "--label", label)
    return data, operator_key


EMBED_ID = "minilm"


def embedding_model() -> Path:
    env = os.environ.get("HIGHSIDE_EMBED_MODEL")
    if env:
        return Path(env)
    out = subprocess.run([str(REPO / "scripts" / "fetch-embedding-model")], check=True,
                         capture_output=True, text=True, timeout=CLI_TIMEOUT_S).stdout
    return Path(out.strip().splitlines()[-1])


def demo_model() -> Path:
    model = _model()
    if not model.is_file():
        pytest.fail(f"model not found: {model} (set HIGHSIDE_TEST_MODEL)")
    return model


@pytest.fixture(scope="session")
def server():
    """Start `highside serve` on an ephemeral port; yield its base URL (http://127.0.0.1:PORT),
    a key of a user with the `user` role created through `highside admin`, and the operator's
    key."""
    tmp = Path(tempfile.mkdtemp(prefix="highside-pytest-"))
    try:
        data, operator_key = init_data(tmp, "data", demo_model())
        _run_cli(_binary(), "models", "import", str(embedding_model()), "--name", EMBED_ID,
                 "--data", str(data), "--label", "SECRET//NOFORN")
        hs = Highside(data)
        try:
            key = hs.user_key(operator_key, "SECRET")
            yield hs.url, key, operator_key
            hs.stop()
        finally:
            hs.kill()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server):
    url, key, _ = server
    # max_retries=0: observe the server's real responses, never SDK retries.
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120.0)
