"""Thin Celery tasks of the dashboard app: the logic lives in plain functions."""

from celery import shared_task

from dashboard import rollups


@shared_task(name="dashboard.roll_up", soft_time_limit=50, time_limit=60, ignore_result=True)
def roll_up():
    return rollups.catch_up()


@shared_task(name="dashboard.prune_rollups", soft_time_limit=300, time_limit=360, ignore_result=True)
def prune_rollups():
    return rollups.prune()
