"""Celery's entry point for workers: `celery -A tasks worker -Q asr` loads this module.

Every setting comes from `producer/settings.py`, the one reader of the environment (each
variable, its default and what it accepts are listed there and in the docs' configuration
page); `producer/celeryconf.py` turns them into Celery's settings, for workers and for the
Client alike.
"""

from producer.celeryconf import *  # noqa: F403
