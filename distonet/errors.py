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


class ToolMissing(DistonetError):
    """A host tool needed for the build is not installed."""


class BuildError(DistonetError):
    """A stage or output could not be made."""


class BootError(DistonetError):
    """A boot test did not reach its marker."""
