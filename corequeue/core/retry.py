"""Retry backoff: how long a failed attempt waits before the next one.

Pure: the random jitter is an argument (a float in [0, 1)), never drawn here.
"""

from __future__ import annotations

#: Longest wait between two attempts, whatever the attempt number (one hour).
MAX_BACKOFF_SECONDS = 3600.0


def exponential_backoff(attempt: int, jitter: float, *, base: float = 2.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``base ** attempt`` seconds capped at :data:`MAX_BACKOFF_SECONDS`, scaled by a factor in
    [0.75, 1.25) taken from ``jitter`` so that jobs failing together do not retry together.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    raw = min(base ** min(attempt, 64), MAX_BACKOFF_SECONDS)
    return raw * (0.75 + jitter / 2)
