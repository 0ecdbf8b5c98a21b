from datetime import UTC, datetime

from corequeue.store.queries import Store
from corequeue.store.records import NewJob


def test_insert_and_claim(store: Store) -> None:
    now = datetime.now(UTC)
    row = NewJob("x.Y", '{"args":[],"kwargs":{}}', "default", 0, now, 1, None, "", "here")
    (ins,) = store.job_insert_many([row], now=now)
    claimed = store.job_claim_many(queues=[], limit=5, lease="a" * 32, worker_id="w", now=now)
    assert [c.id for c in claimed] == [ins.id]
