"""The platform's doors for callers that do not speak Celery, built on producer.Client:

- `gateway/`: HTTP (`python -m producer serve`): the app, its raw HTTP/1.1 limits
  (`http11`), its OpenAPI document per operation (`openapi`) and the try-it page
  (`static/`);
- `jobs/`: the gateway's recordings and jobs (`/v1/transcribe`, `/v1/jobs`): the routes,
  the job store (SQLite or PostgreSQL) and its migrations, the runner, the limits and the
  spool for long uploads;
- `bridge/`: plain AMQP request/reply on `rpc.<algorithm>` queues (`python -m producer
  bridge`), with `request` (what a request may be, as pure functions).

Shared by the doors, at this level: `operations` (what a door can run: every operation
of the catalog, and `transcribe`), `wire` (results and errors in the shapes the doors
send), `forms` (uploads counted as they arrive) and `requests` (reading an HTTP request:
its upload, its timeout).

Nothing here is imported by `import producer`: FastAPI, uvicorn and pika are needed only
on the hosts that run a door (requirements/server.txt).
"""
