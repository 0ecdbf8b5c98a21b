"""The shop's database: its tables, and the engine the web app and the jobs share.

The URL comes from ``SHOP_DATABASE_URL`` (read when the engine is first needed, so a worker's
child process finds the database its parent's tests put there); tests call ``configure``.
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Engine, Numeric, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "shop_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(20), default="new")


class DailyReport(Base):
    __tablename__ = "shop_daily_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    made_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    orders: Mapped[int]


_engine: Engine | None = None


def configure(url: str) -> Engine:
    """Point the shop at the database at ``url``. Returns its engine."""
    global _engine
    if _engine is not None:
        _engine.dispose()
    _engine = create_engine(url)
    return _engine


def engine() -> Engine:
    if _engine is None:
        return configure(os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop.sqlite3"))
    return _engine


def session() -> Session:
    """A new session on the shop's database (``expire_on_commit=False``: handlers return the
    objects they committed)."""
    return Session(engine(), expire_on_commit=False)
