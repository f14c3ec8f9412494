"""The platform's doors for callers that do not speak Celery, built on producer.Client:

- `gateway`: HTTP (`python -m producer serve`), with `forms` (uploads counted as they
  arrive) and the try-it page in `static/`;
- `bridge`: plain AMQP request/reply on `rpc.<algorithm>` queues (`python -m producer
  bridge`), with `bridge_request` (what a request may be, as pure functions);
- `operations`: what a door can run (every operation of the catalog, and `transcribe`),
  and `wire`: results and errors in the shapes the doors send.

Nothing here is imported by `import producer`: FastAPI, uvicorn and pika are needed only
on the hosts that run a door (requirements/server.txt).
"""
