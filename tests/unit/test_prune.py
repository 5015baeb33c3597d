import json
import os

from distonet.build import prune, stages_in_use
from distonet.run import RecordingRunner


def test_prune_keeps_what_manifests_use_and_live_partials(paths):
    stages = paths.stages
    for name in ["a" * 32, "b" * 32, "c" * 32 + ".partial-999999999", "d" * 32 + f".partial-{os.getpid()}"]:
        (stages / name / "tree").mkdir(parents=True)
    (stages / ("b" * 32 + ".lock")).write_text("")
    (paths.output / "r").mkdir(parents=True)
    (paths.output / "r" / "manifest.json").write_text(json.dumps({"stages": [{"key": "a" * 64}]}))
    assert stages_in_use(paths) == {"a" * 32}
    removed = prune(paths, RecordingRunner())
    assert sorted(p.name for p in removed) == ["b" * 32, "c" * 32 + ".partial-999999999"]
    assert sorted(p.name for p in stages.iterdir()) == ["a" * 32, "b" * 32 + ".lock", "d" * 32 + f".partial-{os.getpid()}"]
