"""The rules by which doors learn algorithms from workers (producer.algorithms.learnt): a
declaration rebuilt from its description checks options like the original, a local one is
never overridden (the conflict is reported), and one whose last worker is gone stays,
marked unserved. The whole path through real workers: tests/clients/test_learnt_algorithms.py."""

from dataclasses import replace
from typing import Any

import msgpack
import pytest
from starlette.testclient import TestClient

from producer.algorithms.builtins import BUILTINS
from producer.algorithms.catalog import build_catalog
from producer.algorithms.declare import Algorithm, AlgorithmError
from producer.algorithms.learnt import Learnt, from_description
from producer.errors import InvalidOptions
from producer.servers.gateway import create_app
from tests.plugin.speech_echo_demo import ALGORITHM as ECHO
from tests.unit.test_doors_catalog import CatalogClient

ECHO_PLUGIN = replace(ECHO, source="speech-echo-demo")


def wire(algorithm: Algorithm) -> dict[str, Any]:
    """A declaration as a worker's answer brings it: through msgpack."""
    return msgpack.unpackb(msgpack.packb(algorithm.describe()))  # type: ignore[no-any-return]


def builtins_only() -> Learnt:
    return Learnt(build_catalog(list(BUILTINS), [], {}))


def test_a_declaration_rebuilt_from_its_description_checks_options_the_same() -> None:
    # Given the echo plugin's description, as a worker sends it
    rebuilt = from_description(wire(ECHO_PLUGIN))
    # Then the rebuilt declaration describes itself the same, and types options the same
    assert rebuilt.describe() == wire(ECHO_PLUGIN)
    spot = rebuilt.operations[0]
    assert spot.validate("echo", {"keywords": "fox"}) == ECHO.operations[0].validate(
        "echo", {"keywords": "fox"}
    )
    with pytest.raises(InvalidOptions, match=r"option mode must be one of \['exact', 'fuzzy'\]"):
        spot.validate("echo", {"mode": "loose"})
    # And it names no function a door could run
    assert spot.function.startswith("on-its-workers:")
    # And the built-ins survive the trip too, several operations included
    for algorithm in BUILTINS:
        assert from_description(wire(algorithm)).describe() == wire(algorithm)


@pytest.mark.parametrize(
    "broken",
    [
        {"name": "echo"},
        {**wire(ECHO), "name": "Bad Name"},
        {**wire(ECHO), "operations": {"other": wire(ECHO)["operations"]["echo"]}},
        {**wire(ECHO), "operations": {"echo": {"help": "h", "clips": 9, "options": {}}}},
        "not a map",
    ],
)
def test_a_broken_description_is_refused_with_a_reason(broken: Any) -> None:
    with pytest.raises(AlgorithmError):
        from_description(broken)


def test_an_algorithm_only_workers_declare_is_learnt_and_listed_after_the_local_ones() -> None:
    learnt = builtins_only()
    local = learnt.catalog
    # When a worker answers with the echo plugin's declaration (and a built-in, as it is)
    asr = next(a for a in BUILTINS if a.name == "asr")
    changed = learnt.update({"w1@h": {"echo": wire(ECHO_PLUGIN), "asr": wire(asr)}})
    # Then echo is learnt, after the built-ins, and served by that worker
    assert changed and learnt.catalog is not local
    assert learnt.catalog.names == (*local.names, "echo")
    assert learnt.catalog.operation("echo") is not None
    assert learnt.report()["learnt"] == {
        "echo": {"source": "speech-echo-demo", "workers": ["w1@h"], "served": True}
    }
    assert learnt.conflicts == {}
    # And the same answer again changes nothing (the doors keep their catalog object)
    before = learnt.catalog
    assert not learnt.update({"w1@h": {"echo": wire(ECHO_PLUGIN)}})
    assert learnt.catalog is before


def test_a_worker_never_overrides_a_local_declaration_and_the_conflict_is_reported() -> None:
    learnt = builtins_only()
    vad = next(a for a in BUILTINS if a.name == "vad")
    # Given a worker whose vad declares other options than this door's
    other = wire(vad)
    other["operations"]["vad"]["options"]["threshold"]["high"] = 5.0
    other["summary"] = "a different vad"
    # When it answers
    changed = learnt.update({"old@h": {"vad": other}, "good@h": {"vad": wire(vad)}})
    # Then the door keeps its own vad, and says which worker differs
    assert not changed
    assert learnt.catalog.algorithms["vad"] is vad
    assert "old@h declare 'vad' differently" in learnt.conflicts["vad"]
    assert "good@h" not in learnt.conflicts["vad"] and "vad" not in learnt.report()["learnt"]
    with pytest.raises(InvalidOptions):
        learnt.catalog.operation("vad").validate("vad", {"threshold": 3.0})  # type: ignore[union-attr]
    # And a name the doors keep for themselves is refused too
    squatter = {**wire(ECHO), "name": "transcribe"}
    squatter["operations"] = {"transcribe": squatter["operations"]["echo"]}
    learnt.update({"w@h": {"transcribe": squatter}})
    assert "transcribe" not in learnt.catalog.names and "transcribe" in learnt.conflicts


def test_a_worker_on_other_hardware_is_no_conflict() -> None:
    from producer.algorithms.builtins import builtins

    # Given whisper on a GPU worker, batched: a GPU's resources, one host thread
    (on_a_card,) = [a for a in builtins("cuda", "auto") if a.name == "whisper"]
    assert on_a_card.resources.gpu
    # When it answers a door whose own whisper is the CPU's
    learnt = builtins_only()
    assert not learnt.update({"whisper-gpu@h": {"whisper": wire(on_a_card)}})
    # Then nothing is reported: only resources differ, and callers send the same calls
    assert learnt.conflicts == {}
    # but a worker whose options differ still is
    other = wire(on_a_card)
    other["operations"]["whisper"]["options"]["beam_size"]["high"] = 20
    learnt.update({"odd@h": {"whisper": other}})
    assert "odd@h declare 'whisper' differently" in learnt.conflicts["whisper"]


def test_an_algorithm_whose_last_worker_is_gone_stays_listed_unserved() -> None:
    learnt = builtins_only()
    learnt.update({"w1@h": {"echo": wire(ECHO_PLUGIN)}, "w2@h": {"echo": wire(ECHO_PLUGIN)}})
    # When one worker stops, then the other
    learnt.update({"w2@h": {"echo": wire(ECHO_PLUGIN)}})
    assert learnt.report()["learnt"]["echo"]["workers"] == ["w2@h"]
    assert learnt.unserved == []
    learnt.update({})
    # Then echo is still known, with its options, and marked unserved
    assert "echo" in learnt.catalog.names and learnt.catalog.operation("echo") is not None
    assert learnt.unserved == ["echo"]
    assert learnt.report()["learnt"]["echo"] == {
        "source": "speech-echo-demo", "workers": [], "served": False,
    }  # fmt: skip
    # And it is served again when a worker comes back
    learnt.update({"w3@h": {"echo": wire(ECHO_PLUGIN)}})
    assert learnt.unserved == []


def test_workers_that_disagree_are_reported_and_a_replaced_declaration_is_taken() -> None:
    learnt = builtins_only()
    learnt.update({"v1@h": {"echo": wire(ECHO_PLUGIN)}})
    newer = wire(replace(ECHO_PLUGIN, summary="echo, version 2"))
    # When a worker with another version joins, the doors keep the one they have and say so
    assert not learnt.update({"v1@h": {"echo": wire(ECHO_PLUGIN)}, "v2@h": {"echo": newer}})
    assert learnt.catalog.algorithms["echo"].summary == ECHO.summary
    assert "in 2 different ways" in learnt.conflicts["echo"]
    # When only the new version is left, it replaces the old one
    assert learnt.update({"v2@h": {"echo": newer}})
    assert learnt.catalog.algorithms["echo"].summary == "echo, version 2"
    assert learnt.conflicts == {}


def test_a_bad_answer_is_reported_not_learnt() -> None:
    learnt = builtins_only()
    assert not learnt.update({"w@h": "no map", "v@h": {"echo": {"name": "echo"}}})
    assert set(learnt.conflicts) == {"w@h", "echo"}
    assert "refused" in learnt.conflicts["echo"] and "echo" not in learnt.catalog.names


def test_the_gateway_lists_and_documents_what_it_learns_without_a_restart() -> None:
    # Given a gateway over the built-ins only
    client = CatalogClient(build_catalog(list(BUILTINS), [], {}))
    app = create_app(client, api_key="", threads=1)  # type: ignore[arg-type]
    with TestClient(app) as http:
        assert "/v1/echo" not in http.get("/openapi.json").json()["paths"]
        # When its registry learns echo from a worker
        app.state.door.learnt.update({"w1@h": {"echo": wire(ECHO_PLUGIN)}})
        listing = http.get("/v1/algorithms").json()
        doc = http.get("/openapi.json").json()
        # Then the listing and the document have it, marked learnt and served
        assert listing["algorithms"][-1] == "echo" and "echo" in listing["operations"]
        assert listing["declarations"]["echo"] == wire(ECHO_PLUGIN)
        assert listing["learnt"]["echo"]["served"] and listing["conflicts"] == {}
        assert "/v1/echo" in doc["paths"]
        # And once its worker is gone, it stays, unserved
        app.state.door.learnt.update({})
        listing = http.get("/v1/algorithms").json()
        assert "echo" in listing["algorithms"] and not listing["learnt"]["echo"]["served"]
        assert "/v1/echo" in http.get("/openapi.json").json()["paths"]


def test_a_worker_offers_the_declarations_of_the_queues_it_consumes() -> None:
    from types import SimpleNamespace

    from tasks.declarations import served

    vad = next(a for a in BUILTINS if a.name == "vad")
    queues = [SimpleNamespace(name="vad"), SimpleNamespace(name="not-an-algorithm")]
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(queues=queues))
    # msgpack carries the answer: what it sends is what the doors rebuild from
    assert msgpack.unpackb(msgpack.packb(served(consumer))) == {"vad": wire(vad)}
    assert served(SimpleNamespace(task_consumer=None)) == {}  # not consuming yet
