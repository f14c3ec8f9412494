"""Worker apps for bench/breakdown.py: the platform's worker with one setting changed
each, to measure what that setting costs (`celery -A bench.apps.<name> worker`). Never
for production: each drops something the platform guarantees or chose on purpose."""
