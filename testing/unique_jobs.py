"""Jobs with uniqueness policies of their own, for the tests of unique keys (issue 21)."""

from __future__ import annotations

import corequeue
from corequeue import Job, register_job


@register_job
class Reindex(Job):
    """A debounced job: one waiting reindex per document, with the latest arguments."""

    def __init__(self, doc: str, version: int = 0) -> None:
        self.doc = doc
        self.version = version

    def run(self) -> int:
        return self.version

    def default_unique_key(self) -> str:
        return f"reindex:{self.doc}"

    def default_unique_until(self) -> str:
        return "started"

    def default_on_conflict(self) -> str:
        return "replace"


@corequeue.job(unique_key=lambda doc, version=0: f"export:{doc}", unique_until="1h")
def export(doc: str, version: int = 0) -> int:
    """At most one export per document an hour (the key holds an hour after the export)."""
    return version


@corequeue.job(on_conflict="raise")
def charge(order: int) -> int:
    """Charging twice is a mistake: a second enqueue of a held key raises DuplicateJob."""
    return order


@corequeue.job(unique_key="nightly-export", on_conflict="raise")
def nightly_export() -> str:
    """Scheduled: an occurrence while the last export still waits adds nothing (and does not
    raise: a schedule has nobody to raise to)."""
    return "exported"
