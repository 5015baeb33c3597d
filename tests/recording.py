"""A runner for unit tests: records argv lists (and stdin) and answers from a table."""

from __future__ import annotations

import shlex

from distonet.host.run import Result


class RecordingRunner:
    def __init__(self, answers: dict[str, str] | None = None, fail: str | None = None, effects=None):
        """`effects`: {command prefix: callable(argv)} standing in for what a tool writes."""
        self.calls: list[tuple[str, ...]] = []
        self.inputs: list[str | None] = []
        self.answers = answers or {}
        self.fail = fail
        self.effects = effects or {}

    def __call__(self, argv, *, check=True, capture=False, env=None, input=None, timeout=None) -> Result:
        from distonet.errors import CommandError
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        self.inputs.append(input)
        line = shlex.join(argv)
        if self.fail and line.startswith(self.fail):
            if check:
                raise CommandError(f"command failed (1): {line}")
            return Result(argv, 1, "", "failed")
        for prefix, effect in self.effects.items():
            if line.startswith(prefix):
                effect(argv)
        out = next((v for k, v in self.answers.items() if line.startswith(k)), "")
        return Result(argv, 0, out, "")
