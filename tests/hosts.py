"""Machines for tests: Linux network namespaces on one bridge, each acting as a separate host.

    with Network() as net:               # bridge speech-br<id>, 10.231.N.1/24 on this side
        a, b = Host(net, "a"), Host(net, "b")   # 10.231.N.2, 10.231.N.3
        proc = a.run([sys.executable, "-m", "celery", ...], env=env, stdout=log)
        a.kill()                         # link down, every process in it SIGKILLed

A host shares this machine's file system and Python (so it runs the repository as is) but
has its own network stack: it reaches only the bridge's addresses, and the node under test
reaches it only through the bridge. `kill()` is a machine that vanishes: its link goes down
before its processes die, so no FIN or RST ever leaves it and its peers notice only by
their own timeouts (AMQP heartbeats), as with a real crash or cable pull.

Needs root and iproute2 (`ip netns`). No NAT, no route to anything but the bridge; iptables
is touched only if its FORWARD or INPUT chain would drop the bridge's traffic, with rules
scoped to the bridge that `close()` removes.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from typing import IO, Any

from tests.helpers import REPO, wait_for

SUBNET = "10.231"  # 10.231.N.0/24, one N per Network
IFNAMSIZ = 15  # longest Linux interface name (16 bytes with the NUL)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def free_subnet_index() -> int:
    """An N such that no interface or route of this machine uses 10.231.N.0/24."""
    seen = _ip("-o", "addr").stdout + _ip("-o", "route").stdout
    used = {int(n) for n in re.findall(rf"\b{re.escape(SUBNET)}\.(\d+)\.", seen)}
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise RuntimeError(f"every {SUBNET}.N.0/24 subnet is in use")
    return free[os.getpid() % min(len(free), 16)]  # parallel runs rarely pick the same N


def netns_available() -> tuple[bool, str]:
    """Whether this process can build a Network, and if not, what failed (a skip reason)."""
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return False, f"network namespaces need root; running as uid {os.geteuid()}"
    probe = f"speech-probe-{uuid.uuid4().hex[:6]}"
    bridge = f"spprobe{uuid.uuid4().hex[:6]}"
    try:
        for args in (["netns", "add", probe], ["link", "add", bridge, "type", "bridge"]):
            done = _ip(*args, check=False)
            if done.returncode != 0:
                return False, f"`ip {' '.join(args)}` failed: {done.stderr.strip()}"
    finally:
        _ip("link", "del", bridge, check=False)
        _ip("netns", "del", probe, check=False)
    return True, ""


class _Firewall:
    """ACCEPT rules for the bridge's traffic, only where a chain would otherwise drop it."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.added: list[list[str]] = []

    def open(self) -> None:
        if shutil.which("iptables") is None:
            return
        for chain, match in (("FORWARD", ["-i", self.bridge, "-o", self.bridge]),
                             ("INPUT", ["-i", self.bridge])):  # fmt: skip
            if self._may_drop(chain):
                rule = [chain, *match, "-m", "comment", "--comment", "speech-tests", "-j", "ACCEPT"]
                subprocess.run(["iptables", "-I", *rule], check=True, timeout=30)
                self.added.append(rule)

    def close(self) -> None:
        for rule in reversed(self.added):
            subprocess.run(["iptables", "-D", *rule], capture_output=True, timeout=30)
        self.added.clear()

    @staticmethod
    def _may_drop(chain: str) -> bool:
        done = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return False  # no iptables tables here: nothing to open
        lines = done.stdout.splitlines()
        policy_accepts = f"-P {chain} ACCEPT" in lines
        return not policy_accepts or any(re.search(r"-j (DROP|REJECT)", line) for line in lines)


class Network:
    """A Linux bridge with this machine's side at 10.231.N.1/24 (`gateway`)."""

    def __init__(self, index: int | None = None) -> None:
        self.id = uuid.uuid4().hex[:5]
        self.bridge = f"speech-br{self.id}"
        assert len(self.bridge) <= IFNAMSIZ, self.bridge
        self.index = free_subnet_index() if index is None else index
        self.gateway = f"{SUBNET}.{self.index}.1"
        self.hosts: list[Host] = []
        self._next_k = 2  # .1 is the gateway
        self._firewall = _Firewall(self.bridge)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self._firewall.open()
        except BaseException:
            self.close()
            raise

    def address(self, k: int) -> str:
        return f"{SUBNET}.{self.index}.{k}"

    def close(self) -> None:
        """Remove every host (namespace, veth, processes), the bridge and any iptables rule."""
        for host in list(self.hosts):
            host.close()
        self._firewall.close()
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Host:
    """A network namespace plugged into `network` at 10.231.N.k/24, default route via the
    gateway: a machine of its own as far as the network is concerned."""

    def __init__(self, network: Network, name: str) -> None:
        self.network, self.name = network, name
        k, network._next_k = network._next_k, network._next_k + 1
        if k > 254:
            raise RuntimeError("a /24 holds 253 hosts")
        self.address = network.address(k)
        self.netns = f"speech-{network.id}-{name}"
        self.veth = f"spv{network.id}-{k}"  # this machine's end; the host's end is eth0
        assert len(self.veth) <= IFNAMSIZ, self.veth
        network.hosts.append(self)
        try:
            _ip("netns", "add", self.netns)
            peer = ["peer", "name", "eth0", "netns", self.netns]
            _ip("link", "add", self.veth, "type", "veth", *peer)
            _ip("link", "set", self.veth, "master", network.bridge)
            _ip("link", "set", self.veth, "up")
            self._in("link", "set", "lo", "up")
            self._in("addr", "add", f"{self.address}/24", "dev", "eth0")
            self._in("link", "set", "eth0", "up")
            self._in("route", "add", "default", "via", network.gateway)
        except BaseException:
            self.close()
            raise

    def _in(self, *args: str) -> None:
        _ip("-n", self.netns, *args)

    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = subprocess.STDOUT,
        cwd: str | os.PathLike[str] = REPO,
    ) -> "subprocess.Popen[bytes]":
        """Start `argv` inside this host, in a process group of its own. `ip netns exec`
        execs `argv`, so the Popen's pid is the program's own."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *argv],
            env=env, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True,
        )  # fmt: skip

    def call(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside this host to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True, text=True, timeout=timeout, cwd=REPO,
        )  # fmt: skip

    def pids(self) -> list[int]:
        done = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in done.stdout.split()]

    def unplug(self) -> None:
        """Its network cable is pulled: nothing goes in or out, its processes run on."""
        _ip("link", "set", self.veth, "down")

    def plug(self) -> None:
        """The cable is back: its connections may find their peers again, or learn they died."""
        _ip("link", "set", self.veth, "up")

    def kill(self) -> None:
        """The machine vanishes: its link goes down first (nothing more leaves it, not even
        the FIN or RST of its dying sockets), then every process in it gets SIGKILL."""
        _ip("link", "set", self.veth, "down", check=False)

        def all_dead() -> bool:
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return not pids

        try:
            wait_for(all_dead, 10, lambda: f"processes {self.pids()} in {self.netns} to die", 0.05)
        except AssertionError as survived:  # close() goes on past a RuntimeError
            raise RuntimeError(str(survived)) from None

    def close(self) -> None:
        """Kill what runs here and remove the namespace (its veth pair goes with it)."""
        with contextlib.suppress(RuntimeError):
            self.kill()
        _ip("link", "del", self.veth, check=False)
        _ip("netns", "del", self.netns, check=False)
        if self in self.network.hosts:
            self.network.hosts.remove(self)
