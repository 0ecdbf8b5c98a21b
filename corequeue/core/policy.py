"""The retry policy: whether an attempt that raised may be retried, which rule said so, and
which rule an ending records (:func:`ending_rule`: also "retries_exhausted" and the bounds
that fail a job without its exception being judged).

Decides from the exception's class, the job's ``discard_on`` and ``retry_on`` and, when the job
overrides it, the answer of its ``should_retry(exc, attempt)`` (the caller asks the job and
passes the answer in: this module calls no job code). Never retries past the job's attempts:
that stays :func:`corequeue.core.lifecycle.finish`'s decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Rule(StrEnum):
    """The rule that decided whether an attempt that raised is retried."""

    DISCARD_ON = "discard_on"  # the exception is in discard_on: fail at once
    RETRY_ON = "retry_on"  # retry_on is set: retried only if the exception is in it
    SHOULD_RETRY = "should_retry"  # the job's should_retry() answered
    DEFAULT = "default"  # no rule: retried while attempts are left
    # What an ending records when no rule above refused the retry but the job still failed:
    RETRIES_EXHAUSTED = "retries_exhausted"  # its attempts were all used
    MAX_WORKER_LOSSES = "max_worker_losses"  # lost with its worker or child too often in a row
    MAX_DEFERRALS = "max_deferrals"  # deferred itself too often without using an attempt
    UNKNOWN_JOB_TIMEOUT = "unknown_job_timeout"  # no worker could resolve its name in time
    #: The job's stored parameters cannot be used (corrupt, or an ORM row since deleted): a
    #: retry would find them the same, so the job fails at once (its error says why).
    PARAMETERS = "parameters"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether to retry (while attempts are left) and the rule that decided."""

    retry: bool
    rule: Rule

    def note(self, exc_name: str) -> str:
        """What the job's error says about the verdict ('' for the default rule)."""
        if self.rule in (Rule.DEFAULT, Rule.PARAMETERS):
            return ""
        if self.rule is Rule.DISCARD_ON:
            return f"not retried: {exc_name} is in discard_on"
        if self.rule is Rule.RETRY_ON:
            if self.retry:
                return ""
            return f"not retried: {exc_name} is not in retry_on"
        return "retried: should_retry() said so" if self.retry else "not retried: should_retry()"


def decide(
    exc_type: type[BaseException],
    *,
    retry_on: Sequence[type[BaseException]] = (),
    discard_on: Sequence[type[BaseException]] = (),
    should_retry: bool | None = None,
) -> Verdict:
    """The verdict on an attempt that raised ``exc_type``.

    In order: an exception in ``discard_on`` (or a subclass) is never retried; then
    ``should_retry`` (the job's own answer, None when the job does not override it) decides;
    then a non-empty ``retry_on`` retries only its exceptions; else the attempt is retried.
    """
    if discard_on and issubclass(exc_type, tuple(discard_on)):
        return Verdict(False, Rule.DISCARD_ON)
    if should_retry is not None:
        return Verdict(bool(should_retry), Rule.SHOULD_RETRY)
    if retry_on:
        return Verdict(issubclass(exc_type, tuple(retry_on)), Rule.RETRY_ON)
    return Verdict(True, Rule.DEFAULT)


def ending_rule(judged: Rule | None, *, refused: bool, failed: bool) -> Rule | None:
    """The rule an attempt that errored, timed out or was lost records with its ending.

    ``judged``: the rule that judged its exception (None when none was asked: a timeout, a
    loss); ``refused``: that rule refused a retry; ``failed``: the ending failed the job. A
    failed job records the rule that refused the retry, else ``retries_exhausted``; a retried
    one the rule that allowed it (None when no rule is set: the default retries).
    """
    if failed:
        return judged if refused and judged is not None else Rule.RETRIES_EXHAUSTED
    return None if judged in (None, Rule.DEFAULT) else judged


def unusable_parameters() -> Verdict:
    """The verdict on an attempt whose stored parameters could not be decoded: no retry."""
    return Verdict(False, Rule.PARAMETERS)


def check_exception_types(option: str, value: object) -> tuple[type[BaseException], ...]:
    """``value`` (an exception class or a tuple of them) as a tuple. Raises TypeError naming
    ``option`` for anything else."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{option} takes exception classes (one or a tuple), not {item!r}")
    return tuple(items)
