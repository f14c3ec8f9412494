"""The topology declared in celeryconfig."""

import celeryconfig


def test_every_algorithm_has_a_durable_queue_on_the_direct_exchange() -> None:
    queues = {q.name: q for q in celeryconfig.task_queues}
    assert set(queues) == set(celeryconfig.ALGORITHMS)
    for name, queue in queues.items():
        assert queue.durable and queue.exchange.durable
        assert queue.exchange.type == "direct"
        assert queue.routing_key == name
    # Every task routes to its algorithm's queue: speech.<algorithm>[.<operation>]
    for task, route in celeryconfig.task_routes.items():
        assert route == {"queue": task.split(".")[1]}, task
    assert {r["queue"] for r in celeryconfig.task_routes.values()} == set(queues)


def test_msgpack_only_and_no_missing_queues() -> None:
    assert celeryconfig.accept_content == ["msgpack"]
    assert celeryconfig.result_accept_content == ["msgpack"]
    assert celeryconfig.task_serializer == celeryconfig.result_serializer == "msgpack"
    assert celeryconfig.task_create_missing_queues is False
    assert celeryconfig.result_backend == "rpc://"
    assert celeryconfig.task_time_limit < 30 * 60  # below RabbitMQ's consumer_timeout
