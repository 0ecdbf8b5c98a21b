"""The shop's tables on corequeue's test database, for every mode of the plugin."""

import pytest
from shop import db


@pytest.fixture
def corequeue_app_setup(corequeue_database_url):
    """Overrides the plugin's fixture: the shop's tables go on the test database, and the
    worker's children find it through SHOP_DATABASE_URL."""
    engine = db.configure(corequeue_database_url)
    db.Base.metadata.create_all(engine)
    yield {"SHOP_DATABASE_URL": corequeue_database_url}
    db.Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def shop_db(corequeue_app_setup):
    """For the tests that use the shop's tables without a worker (inline, capture)."""
