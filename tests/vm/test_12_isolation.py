"""The guest's network is isolated (kharness issue 21): QEMU's user network runs with
``restrict=on``, so the guest reaches neither the host's loopback services (10.0.2.2 is the host's
127.0.0.1 otherwise) nor anything beyond the host, and the only way in is the SSH forward, bound
to the host's 127.0.0.1.

A real boot of the shared baseline kernel and the fio image (debian-bookworm, which has python3).
The host side is an HTTP server on a random port of 127.0.0.1, in a thread, shut down at the end
of the test or after SERVER_LIFETIME_S, whichever comes first. The guest probes with plain TCP
connects under a short timeout. No traffic goes to a real outside host: 198.51.100.1 is TEST-NET-2
(RFC 5737, never routed), and 10.0.2.3:53 is slirp's own DNS address.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.run.boot import booted

pytestmark = pytest.mark.vm

SERVER_LIFETIME_S = 300.0
PROBE_TIMEOUT_S = 3.0
SECRET = b"kharness-host-loopback-secret"

# Runs in the guest: one TCP connect per HOST:PORT argument, printed as JSON
# {target: "connected" | "refused" | "timeout" | "error: ..."}.
PROBE = r"""
import json, socket, sys
timeout = float(sys.argv[1])
out = {}
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            out[target] = "connected"
    except ConnectionRefusedError:
        out[target] = "refused"
    except (socket.timeout, TimeoutError):
        out[target] = "timeout"
    except OSError as e:
        out[target] = "error: " + (e.strerror or type(e).__name__)
print(json.dumps(out))
"""


class _Server(http.server.ThreadingHTTPServer):
    hits: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(SECRET)))
        self.end_headers()
        self.wfile.write(SECRET)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def loopback_http_server() -> Iterator[_Server]:
    """An HTTP server on the host's 127.0.0.1 (random port) for at most SERVER_LIFETIME_S."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    limit = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    limit.daemon = True
    thread.start()
    limit.start()
    try:
        yield server
    finally:
        limit.cancel()
        server.shutdown()
        server.server_close()
        thread.join(10)


def _host_address() -> str | None:
    """This host's address on its default route (a UDP connect sends nothing), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def probe(vm, *targets: str) -> dict[str, str]:
    res = vm.run(["python3", "-c", PROBE, str(PROBE_TIMEOUT_S), *targets],
                 timeout=30 + PROBE_TIMEOUT_S * len(targets))
    return json.loads(res.stdout)


def test_guest_reaches_neither_the_host_nor_the_outside(testbed, tmp_path: Path):
    with loopback_http_server() as server:
        port = server.server_address[1]
        # control: the server answers on the host's loopback
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.read() == SECRET
        assert server.hits == 1
        with booted(testbed, "baseline", tmp_path / "run") as vm:
            (netdev,) = [vm.argv[i + 1] for i, a in enumerate(vm.argv) if a == "-netdev"]
            assert "restrict=on" in netdev.split(",") and f"hostfwd=tcp:127.0.0.1:{vm.port}-:22" in netdev
            # controls: the guest has its DHCP address (restrict=on still answers DHCP), and the
            # probe can connect (to the guest's own sshd), so a refusal below is the network's
            assert "10.0.2.15" in vm.run(["ip", "-4", "-o", "addr", "show", "eth0"], timeout=30).stdout
            assert probe(vm, "127.0.0.1:22") == {"127.0.0.1:22": "connected"}

            host_loopback, dns, test_net = f"10.0.2.2:{port}", "10.0.2.3:53", "198.51.100.1:80"
            got = probe(vm, host_loopback, dns, test_net)
            assert got[host_loopback] != "connected", got
            assert got[dns] != "connected", got
            assert got[test_net] != "connected", got
            # and the same through an HTTP client, in case a connect alone misleads
            fetch = vm.run(["python3", "-c", "import sys, urllib.request; "
                            "print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read())",
                            f"http://10.0.2.2:{port}/", str(PROBE_TIMEOUT_S)], timeout=60, check=False)
            assert fetch.status != 0 and SECRET.decode() not in fetch.stdout, fetch
            assert server.hits == 1, "the guest's request reached the host's loopback server"

            # the SSH forward listens on the host's loopback only
            addr = _host_address()
            if addr is not None:
                with pytest.raises(OSError):
                    socket.create_connection((addr, vm.port), timeout=PROBE_TIMEOUT_S).close()
            # the forward itself works: the harness's SSH ran every command above through it
            assert vm.run(["true"], timeout=30).ok
