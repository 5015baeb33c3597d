"""doit entry point, kept thin: `doit build recipe=NAME` (default: minimal). See README.md."""

from doit import get_var

from distonet.tasks import DOIT_CONFIG, load_tasks  # noqa: F401  (doit reads DOIT_CONFIG)


def task_distonet():
    """every task of the selected recipe"""
    yield from load_tasks(get_var("recipe"))
