"""Recordings and jobs (`/v1/transcribe`, `/v1/jobs`): `routes` (the APIRouter), `store`
(jobs in SQLite or PostgreSQL) with its `migrations`, `runner` (claiming, leases,
callbacks), `limits` (what a store may hold) and `spool` (long uploads in files).

The package itself imports nothing: the store and the runner load without FastAPI."""
