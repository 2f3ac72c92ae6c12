"""The one error tree of the framework.

Every error the framework raises derives from :class:`OnexError`. Messages name the bad value and what was
allowed; port errors say whether retrying can help.
"""

from __future__ import annotations


class OnexError(Exception):
    """Root of every error raised by the framework."""


class ContractError(OnexError):
    """A contract could not be loaded or is invalid. Raised at load time, never at run time."""


class TransitionError(OnexError):
    """An FSM transition could not be taken."""


class PortError(OnexError):
    """An infrastructure port failed. ``retriable`` says whether the same call may succeed later."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class RetriablePortError(PortError):
    """A transient failure: the broker or database is unreachable, a timeout, a lost connection."""

    retriable = True


class UsageError(OnexError):
    """A command or API was called with arguments it does not accept."""
