"""A throwaway JupyterLab server for the browser tests.

It serves a copy of the notebooks (JupyterLab autosaves, and the committed notebooks must not
change), listens on 127.0.0.1 with a random free port and a random token, keeps its settings,
workspaces and runtime files in a temp folder, and is shut down in every case: first politely
through the REST API (which also stops the kernels), then by signal to the server and every
process it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

KERNEL = "peftlab"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
START_TIMEOUT_S = 90


@dataclass(frozen=True)
class LabServer:
    url: str
    token: str
    root: Path
    log: Path
    pid: int

    def notebook_url(self, name: str) -> str:
        """The page that opens `name` alone (`reset`: no tabs restored from an earlier visit)."""
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kernel_is_installed(name: str = KERNEL) -> bool:
    """Whether `make setup` installed the kernel in this environment (the only place the
    server looks: its user data folder is a fresh temp folder)."""
    return (Path(sys.prefix) / "share" / "jupyter" / "kernels" / name / "kernel.json").is_file()


# User settings for the test's JupyterLab: every cell in the page (the default windowing attaches
# off-screen cells lazily, so a test could not see them) and no news pop-up over the widgets.
SETTINGS = {
    "notebook-extension/tracker": {"windowingMode": "none"},
    "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _write_settings(folder: Path) -> None:
    for name, values in SETTINGS.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _environment(state: Path) -> dict[str, str]:
    _write_settings(state / "settings")
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_DATA_DIR=str(state / "data"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        IPYTHONDIR=str(state / "ipython"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # Chromium, the server and the kernel share two cores: one torch thread for the kernel.
        OMP_NUM_THREADS="1",
    )
    return env


@contextmanager
def running_lab(notebooks: Path, state: Path) -> Iterator[LabServer]:
    """Copy `notebooks` into `state` and serve the copy with JupyterLab until the block ends."""
    root = state / "notebooks"
    shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token, log_path = free_port(), secrets.token_hex(16), state / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--MappingKernelManager.default_kernel_name={KERNEL}",
        # Nothing from the internet: no news feed, no update check, no PyPI extension search.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI containers run as root; JupyterLab refuses that unless told
        command.append("--allow-root")
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=root, env=_environment(state), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log_path, process.pid)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        _shut_down(server, process)


def _wait_until_up(server: LabServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
        try:
            server.api("status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer in {START_TIMEOUT_S} s:\n{server.log_tail()}")


def _shut_down(server: LabServer, process: subprocess.Popen) -> None:
    # Kernels run in sessions of their own, so note the whole family before asking it to stop.
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        family = []
    if process.poll() is None:
        try:
            server.api("shutdown", method="POST")  # also shuts the kernels down
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
    # Whatever is left (a stuck server, an orphaned kernel) is stopped by force.
    alive = [p for p in family if p.is_running()]
    for p in alive:
        p.terminate()
    _gone, alive = psutil.wait_procs(alive, timeout=10)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)
    if process.poll() is None:
        process.wait(timeout=10)
