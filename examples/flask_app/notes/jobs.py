"""The application's background jobs (the worker: ``corequeue run --import notes.jobs``)."""

from __future__ import annotations

import sqlalchemy as sa

import corequeue
from corequeue import Job, register_job
from notes.models import Note


@register_job
class CountWords(Job):
    def __init__(self, note_id: int) -> None:
        self.note_id = note_id

    def default_retries(self) -> int:
        return 3

    def run(self) -> int:
        with corequeue.get_store().engine.begin() as conn:
            text = conn.execute(sa.select(Note.text).where(Note.id == self.note_id)).scalar_one()
            words = len(text.split())
            conn.execute(sa.update(Note).where(Note.id == self.note_id).values(words=words))
        return words
