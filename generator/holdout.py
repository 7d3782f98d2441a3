"""Global control groups (filled in below)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from generator.store import Base, utcnow


class GlobalControl(Base):
    __tablename__ = "global_controls"
    brand: Mapped[str] = mapped_column(String(200), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    share: Mapped[float] = mapped_column(Float)
    history: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
