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


class CircuitOpenError(RetriablePortError):
    """A circuit breaker is open: the dependency failed repeatedly, so calls fail fast without trying it until
    ``retry_after_s`` has passed (then one probe call is let through)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueryError(PortError):
    """The database refused a statement (a constraint, a type, the SQL itself): retrying the same call cannot help.
    ``sqlstate`` is PostgreSQL's error code (e.g. ``23505`` for a unique violation) and ``constraint`` the constraint
    involved, when there is one."""

    def __init__(self, message: str, *, sqlstate: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message, retriable=False)
        self.sqlstate = sqlstate
        self.constraint = constraint


class UsageError(OnexError):
    """A command or API was called with arguments it does not accept."""


class TransitionNotAllowed(TransitionError):
    """A trigger that no transition out of the current state accepts (or whose guards all reject it)."""

    def __init__(self, machine: str, state: str, trigger: str, allowed: list[str], *, reason: str = "") -> None:
        self.machine, self.state, self.trigger, self.allowed = machine, state, trigger, allowed
        allowed_text = ", ".join(allowed) if allowed else "none (the state is terminal or has no transitions)"
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"{machine}: trigger '{trigger}' is not allowed in state '{state}'{detail}; allowed triggers: "
            f"{allowed_text}"
        )


class TransitionConflict(TransitionError):
    """An FSM store refused a transition record whose sequence is not the next one: another writer moved the
    instance first. Restore the instance from the store and decide again; firing the stale one cannot succeed."""


class NodeRuleError(OnexError):
    """A node broke a rule of its kind or contract: an undeclared event or effect, I/O from a COMPUTE node."""


class PoisonMessage(OnexError):
    """A message that can never be handled: a handler raising it (or a subclass) is not retried; the message goes
    to the dead-letter topic at once."""


class PayloadInvalid(PoisonMessage):
    """A payload does not match its model."""
