"""A steady load for fault tests: threads calling through one Client (pings and real asr),
every answer checked against its own request, every call timed.

`Load.report()` gives the figures of the fault table: calls made, answered correctly,
failed (by error type), hung (past their timeout), lost (timed out although the platform
had the whole timeout to answer) and the longest gap in service.
"""

import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from producer import CallTimeout, Client, SpeechError
from tests.helpers import DATA, wait_for

CLIPS = ["fox_kal16.wav", "weather_awb.wav", "numbers_rms.wav"]
# A call is "hung" if it outlived its timeout by more than this.
HUNG_MARGIN = 1.0
# Seconds a load thread pauses after a failed call (a broker that is down fails calls in
# microseconds; a real caller would not spin on it).
FAILURE_PAUSE = 0.05


@dataclass
class Call:
    started: float
    ended: float
    outcome: str  # "ok", "wrong answer" or the error's type name
    timeout: float
    index: int  # the call's number: a ping's echo token, to find it in worker logs


@dataclass
class Report:
    calls: int
    ok: int
    failed: dict[str, int]
    hung: int
    lost: int
    longest_gap_s: float
    slowest_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "answered_correctly": self.ok,
            "failed": self.failed,
            "hung": self.hung,
            "lost": self.lost,
            "longest_gap_s": round(self.longest_gap_s, 2),
            "slowest_s": round(self.slowest_s, 2),
            **self.extra,
        }


class Load:
    """`threads` threads calling `client` until stop(); every `asr_every`-th call is asr."""

    def __init__(
        self,
        client: Client,
        *,
        threads: int = 8,
        asr_every: int = 10,
        ping_timeout: float = 10.0,
        asr_timeout: float = 30.0,
    ) -> None:
        self.client, self.threads, self.asr_every = client, threads, asr_every
        self.ping_timeout, self.asr_timeout = ping_timeout, asr_timeout
        self.clips = {name: (DATA / name).read_bytes() for name in CLIPS}
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._count = 0
        self._lock = threading.Lock()
        self.expected: dict[str, str] = {}

    def start(self) -> "Load":
        # asr is deterministic: each clip's reference is its own transcript before the fault
        self.expected = {
            name: self.client.asr(data, timeout=120)["text"] for name, data in self.clips.items()
        }
        self._workers = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in self._workers:
            thread.start()
        return self

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        # a failed test must not leave threads calling a Client that is closing
        self._stop.set()
        for thread in self._workers:
            thread.join(self.asr_timeout + 30)

    def stop(self) -> Report:
        self._stop.set()
        for thread in self._workers:
            thread.join(self.asr_timeout + 30)
        assert not any(t.is_alive() for t in self._workers), "a call never returned"
        return self.report()

    def wait_for_success(self, after: float, timeout: float = 60.0) -> float:
        """Seconds from `after` until a call that started after it succeeded."""

        def succeeded() -> list[float]:
            return [c.ended for c in list(self.calls) if c.started >= after and c.outcome == "ok"]

        def stuck() -> str:
            since = Counter(c.outcome for c in list(self.calls) if c.started >= after)
            return (
                f"a call to succeed: {dict(since)}; where the load threads are:\n{self._stacks()}"
            )

        wait_for(succeeded, timeout, stuck)
        return min(succeeded()) - after

    def _stacks(self) -> str:
        """Each load thread's stack, innermost frames last (what a stuck test must say)."""
        frames = sys._current_frames()
        return "\n".join(
            f"{t.name} (alive: {t.is_alive()}):\n"
            + "".join(traceback.format_stack(frames[t.ident])[-8:] if t.ident in frames else [])
            for t in self._workers
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                i = self._count
                self._count += 1
            call = self._one(i)
            self.calls.append(call)
            if call.outcome != "ok":
                time.sleep(FAILURE_PAUSE)  # as a caller would back off

    def _one(self, i: int) -> Call:
        started = time.monotonic()
        is_asr = i % self.asr_every == 0
        timeout = self.asr_timeout if is_asr else self.ping_timeout
        try:
            if is_asr:
                name = CLIPS[(i // self.asr_every) % len(CLIPS)]
                text = self.client.asr(self.clips[name], timeout=timeout)["text"]
                right = text == self.expected[name]
            else:
                right = self.client.ping("asr", timeout=timeout, echo=i)["echo"] == i
            outcome = "ok" if right else "wrong answer"
        except SpeechError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001  (counted, so a stray error never ends a thread)
            outcome = f"untyped {type(exc).__name__}"
        return Call(started, time.monotonic(), outcome, timeout, i)

    def report(self) -> Report:
        calls = sorted(self.calls, key=lambda c: c.ended)
        ok_ends = [c.ended for c in calls if c.outcome == "ok"]
        gaps = [b - a for a, b in zip(ok_ends, ok_ends[1:], strict=False)]
        failed = Counter(c.outcome for c in calls if c.outcome != "ok")
        return Report(
            calls=len(calls),
            ok=len(ok_ends),
            failed=dict(failed),
            hung=sum(c.ended - c.started > c.timeout + HUNG_MARGIN for c in calls),
            lost=failed.get(CallTimeout.__name__, 0),
            longest_gap_s=max(gaps, default=0.0),
            slowest_s=max((c.ended - c.started for c in calls), default=0.0),
        )
