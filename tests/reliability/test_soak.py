"""5,000 calls through two workers: memory stays bounded, nothing leaks on the broker."""

from concurrent.futures import ThreadPoolExecutor

import psutil

from producer import Client
from tests.helpers import DATA, Vhost, Worker, rabbitmqctl
from tests.reliability.conftest import record

CALLS = 5000
THREADS = 16


def _rss_mb(worker: Worker) -> float:
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20


def _reply_queues(vhost: Vhost) -> list[str]:
    # rpc:// reply queues are named by uuid; everything else here has a fixed name.
    return [q for q in vhost.queues() if q.count("-") == 4 and len(q) == 36]


def test_soak_5000_calls(own_vhost: Vhost) -> None:
    workers = [Worker(own_vhost.url, "asr", name=f"soak{i}").start() for i in range(2)]
    clip = (DATA / "fox_kal16.wav").read_bytes()
    try:
        with Client(own_vhost.url) as client:
            # Every 25th call transcribes; the rest are pings (the messaging path itself)
            def call(i: int) -> str:
                if i % 25 == 0:
                    return client.asr(clip, timeout=120)["text"]
                return client.ping("asr", timeout=60)["worker"]

            with ThreadPoolExecutor(THREADS) as pool:
                warm = list(pool.map(call, range(500)))
                rss_warm = [_rss_mb(w) for w in workers]
                rest = list(pool.map(call, range(500, CALLS)))
            rss_end = [_rss_mb(w) for w in workers]
            answers = warm + rest
            assert len(answers) == CALLS and all(answers)
            served = {a.split("@")[0] for a in answers if "@" in a}
            assert served == {"soak0", "soak1"}  # the queue spread the load
            # While the client lives it holds one reply queue per call in flight, at most
            assert len(_reply_queues(own_vhost)) == len(client.lanes) <= THREADS
        # Memory stays bounded: growth after warm-up is small
        growth = max(end - start for start, end in zip(rss_warm, rss_end, strict=True))
        assert growth < 40, (rss_warm, rss_end)
        # And once the client is closed, no reply queue or consumer of it is left behind
        assert _reply_queues(own_vhost) == []
        out = rabbitmqctl("list_consumers", "-p", own_vhost.name, "queue_name")
        consumers = [c for c in out.split() if c != "queue_name"]
        assert sorted(c for c in consumers if c == "asr") == ["asr", "asr"]
        assert all(c in ("asr",) or c.endswith(".pidbox") for c in consumers), consumers
        record(
            "soak",
            calls=CALLS,
            lost=0,
            worker_rss_mb_after_500=[round(x) for x in rss_warm],
            worker_rss_mb_after_5000=[round(x) for x in rss_end],
            leaked_reply_queues=0,
        )
    finally:
        for w in workers:
            w.stop()
