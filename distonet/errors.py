"""One exception base with narrow subclasses; translated to a one-line message at the boundary."""


class DistonetError(Exception):
    """Base: every error a user can act on. `hint` says what to do next."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}\n  hint: {self.hint}" if self.hint else msg


class RecipeError(DistonetError):
    """A recipe file is invalid: the message names the file and the key."""


class CommandError(DistonetError):
    """An external command failed; the message shows it shell-quoted."""
    returncode: int | None = None
    timeout: float | None = None       # set when the command ran out of time and was killed

    def failed(self, what: str) -> "BuildError":
        """`what failed (exit N):` and the command's last lines (what follows the first line)."""
        if self.timeout is not None:
            return BuildError(f"{what} timed out after {self.timeout:g}s and was killed",
                              hint="a command hung; DISTONET_COMMAND_TIMEOUT (seconds) sets the bound")
        text = str(self)
        tail = text.split("\n", 1)[1] if "\n" in text else ""
        return BuildError(f"{what} failed" + (f" (exit {self.returncode})" if self.returncode else "")
                          + (f":\n{tail}" if tail else ""))


class ToolMissing(DistonetError):
    """A host tool needed for the build is not installed."""


class BuildError(DistonetError):
    """A stage or output could not be made."""


class BootError(DistonetError):
    """A boot test did not reach its marker."""


class Interrupted(DistonetError):
    """Ctrl-C or SIGTERM: everything started was undone."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {'SIGINT (Ctrl-C)' if signum == 2 else 'SIGTERM'}; "
                         "everything the build had started was undone")
        self.exit_code = 128 + signum


EXIT_CODES = {RecipeError: 2, ToolMissing: 3, CommandError: 4, BuildError: 5, BootError: 6}


def report(exc: BaseException, where: str | None = None) -> int:
    """The one boundary: an error a user can act on becomes a message (and an exit code), never
    a traceback. `where` names what was running (the recipe file and the stage)."""
    import sys
    if isinstance(exc, KeyboardInterrupt):
        exc = Interrupted(15 if "signal 15" in str(exc) else 2)
    if isinstance(exc, Interrupted):
        print(f"distonet: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if not isinstance(exc, DistonetError):
        raise exc
    prefix = f"{where}: " if where else ""
    print(f"distonet: error: {prefix}{exc}", file=sys.stderr, flush=True)
    return next((code for cls, code in EXIT_CODES.items() if isinstance(exc, cls)), 1)
