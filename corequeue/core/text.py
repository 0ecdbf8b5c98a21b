"""Text from jobs (queue names, job names, errors) made safe for one log or terminal line.

A control character in such text could split a log line in two, or send an escape sequence to
a terminal: :func:`one_line` writes each as a visible escape (``\\n``, ``\\x1b``). Pure.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters and DEL.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return repr(match[0])[1:-1]


def one_line(text: str) -> str:
    """``text`` with its control characters escaped; ``text`` itself when it has none (the
    common case, checked first at C speed)."""
    if text.isprintable() or not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)


def lines(text: str) -> str:
    """As :func:`one_line` for each line of ``text`` (a traceback), newlines kept."""
    return "\n".join(one_line(line) for line in text.split("\n"))
