"""doit entry point, kept thin: `doit build recipe=NAME[,NAME…]` (default: minimal). See README.md."""

from doit import get_var

from distonet.tasks import DOIT_CONFIG, load_tasks_or_exit  # noqa: F401  (doit reads DOIT_CONFIG)


def task_distonet():
    """the tasks of the recipes named by recipe= (default: minimal), for the site named by site=;
    `doit publish` takes share=; cache= names a stage cache shared with other builders"""
    yield from load_tasks_or_exit(get_var("recipe"), get_var("site"), get_var("share"), get_var("cache"))
