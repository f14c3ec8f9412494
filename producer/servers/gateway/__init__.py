"""The HTTP gateway (`python -m producer serve`): `app` assembles the routers, `routes`
holds the algorithm routes, `http11` bounds raw HTTP/1.1, `openapi` documents each
operation, `static/` is the try-it page. The jobs routes come from producer.servers.jobs."""

from producer.servers.gateway.app import create_app, serve

__all__ = ["create_app", "serve"]
