"""A real Coffer for the SDK's tests.

It runs ``$COFFER_BIN`` or builds ``coffer`` from this repository (``go
build ./cmd/coffer`` with go1.27.3), makes a deployment with ``coffer init
--json`` in a temporary directory, serves it on a free loopback port, waits
for ``/healthz`` and stops it when the tests end.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))

import coffer  # noqa: E402  (after the path is set)

_bin: Optional[str] = None
_shared: Optional["Server"] = None


def coffer_bin() -> str:
    """The coffer binary: $COFFER_BIN, or one built once for this run."""
    global _bin
    if _bin is None:
        _bin = os.environ.get("COFFER_BIN") or ""
        if not _bin:
            out = Path(tempfile.mkdtemp(prefix="coffer-bin-")) / "coffer"
            atexit.register(shutil.rmtree, str(out.parent), True)
            env = {**os.environ, "GOTOOLCHAIN": "go1.27.3", "GOFLAGS": "-mod=readonly"}
            subprocess.run(["go", "build", "-o", str(out), "./cmd/coffer"], cwd=REPO, env=env, check=True)
            _bin = str(out)
    return _bin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One deployment, served until stop()."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        self.root = tempfile.mkdtemp(prefix="coffer-py-")
        self.data = os.path.join(self.root, "data")
        init = subprocess.run([coffer_bin(), "init", "--data-dir", self.data, "--json"],
                              capture_output=True, text=True, check=True)
        info = json.loads(init.stdout)
        self.client_id: str = info["client_id"]
        self.client_secret: str = info["client_secret"]
        self.ca_file: str = info["ca_cert"]
        # The server's config comes from its directory and the variables
        # given here only, never from the caller's COFFER_* settings.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
        self.env.update(env or {})
        self.log_path = os.path.join(self.root, "server.log")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        for _ in range(3):  # the free port may be taken before serve binds it
            port = _free_port()
            self.url = f"https://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [coffer_bin(), "serve", "--data-dir", self.data, "--listen", f"127.0.0.1:{port}",
                     "--metrics-listen", "127.0.0.1:0"], env=self.env, stdout=log, stderr=log)
            if self._wait_healthy():
                return
        self.stop()
        raise RuntimeError("coffer serve did not become healthy:\n" + self.log())

    def _wait_healthy(self) -> bool:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + 30
        host, port = urllib.parse.urlsplit(self.url).netloc.split(":")
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return True
                conn.close()
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def client(self, **kw: Any) -> coffer.Client:
        """A client of the bootstrap admin (or of the credentials given)."""
        kw.setdefault("client_id", self.client_id)
        kw.setdefault("client_secret", self.client_secret)
        kw.setdefault("ca_file", self.ca_file)
        return coffer.Client(self.url, **kw)

    def post_form(self, path: str, form: Mapping[str, str]) -> int:
        """POSTs a form without a token; returns the status."""
        host, port = urllib.parse.urlsplit(self.url).netloc.split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=self.ca_file))
        conn.request("POST", path, urllib.parse.urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
        status = conn.getresponse().status
        conn.close()
        return status

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


CUSTOMERS: Dict[str, Any] = {
    "name": "customers",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "email", "type": "email", "searchable": True},
        {"name": "card_number", "type": "card_number"},
        {"name": "ssn", "type": "ssn"},
    ],
}


def shared() -> Server:
    """The deployment the test modules share: started once, with the
    collection "customers" and the transit key "payments"."""
    global _shared
    if _shared is None:
        srv = Server()
        atexit.register(srv.stop)
        with srv.client() as c:
            c.request("POST", "/v1/collections", CUSTOMERS)
            c.request("POST", "/v1/keys", {"name": "payments"})
        _shared = srv
    return _shared


def init_only() -> str:
    """The CA file of another deployment, never served."""
    root = tempfile.mkdtemp(prefix="coffer-py-other-")
    atexit.register(shutil.rmtree, root, True)
    out = subprocess.run([coffer_bin(), "init", "--data-dir", os.path.join(root, "data"), "--json"],
                         capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)["ca_cert"])


def make_client(srv: Server, name: str, roles: List[str]) -> Dict[str, str]:
    """Creates a service client with roles; returns its credentials."""
    with srv.client() as admin:
        out = admin.request("POST", "/v1/clients", {"name": name, "roles": roles})
    return {"client_id": out["client_id"], "client_secret": out["client_secret"]}
