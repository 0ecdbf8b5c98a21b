"""One page of the job history (``/jobs``): keyset pages by id, and searches in windows.

Pages go by id (``before``, ``after``: the last id seen), never by offset, so a page costs the
same however deep it is. A search for a substring (``q=``'s unique key or name, ``param=``)
must read the rows it looks through, which no index can answer: each page looks through at
most :data:`SEARCH_WINDOW` ids, newest first, and says which; "Older" goes on below them. An
id that ``q=`` names is found wherever it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from corequeue.store.monitoring import JobSummary
from corequeue.store.records import JobFilter
from corequeue.web.dashboard import Dashboard

PAGE_SIZE = 50
#: The ids one page of a search looks through.
SEARCH_WINDOW = 50_000


@dataclass(frozen=True, slots=True)
class HistoryPage:
    jobs: list[JobSummary]
    older: int | None  # the ``before`` cursor of the next older page, None at the end
    newer: int | None  # the ``after`` cursor of the next newer page, None at the start
    searched: tuple[int, int] | None = None  # the ids a search looked through, when not all


def history_page(
    dash: Dashboard, filt: JobFilter, before: int | None, after: int | None
) -> HistoryPage:
    """The jobs matching ``filt`` older than ``before`` (newest first), or just newer than
    ``after``; the newest when neither."""
    bounds = dash.monitor.id_range() if (filt.search or filt.param) else None
    if bounds is None:
        return _plain_page(dash, filt, before, after)
    low, high = bounds
    if after is not None and before is None:
        start = after + 1
        window = (start, start + SEARCH_WINDOW)
        page = dash.monitor.job_page(filt, after_id=after, limit=PAGE_SIZE + 1, window=window)
        if len(page) > PAGE_SIZE:  # newest first: the oldest PAGE_SIZE of them
            page = page[-PAGE_SIZE:]
            return HistoryPage(page, page[-1].id, page[0].id, None)
        newer = window[1] - 1 if window[1] <= high else None
        return HistoryPage(page, start, newer, window if newer or start > low else None)
    top = high + 1 if before is None else min(before, high + 1)
    window = (max(top - SEARCH_WINDOW, low), top)
    page = dash.monitor.job_page(filt, limit=PAGE_SIZE + 1, before_id=before, window=window)
    newer = None if before is None else page[0].id if page else top - 1
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        return HistoryPage(page, page[-1].id, newer, None)
    older = window[0] if window[0] > low else None
    return HistoryPage(page, older, newer, window if older or newer else None)


def _plain_page(
    dash: Dashboard, filt: JobFilter, before: int | None, after: int | None
) -> HistoryPage:
    """A page of a filter that is not a substring search."""
    if after is not None and before is None:
        page = dash.monitor.job_page(filt, after_id=after, limit=PAGE_SIZE + 1)
        has_newer = len(page) > PAGE_SIZE
        page = page[-PAGE_SIZE:] if has_newer else page
        older = dash.monitor.job_page(filt, limit=1, before_id=page[-1].id) if page else []
        return HistoryPage(
            page,
            page[-1].id if older and page else None,
            page[0].id if has_newer and page else None,
        )
    page = dash.monitor.job_page(filt, limit=PAGE_SIZE + 1, before_id=before)
    has_older = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return HistoryPage(
        page,
        page[-1].id if has_older and page else None,
        page[0].id if before is not None and page else None,
    )
