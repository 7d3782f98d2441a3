"""Send-time optimisation (filled in below)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from generator.store import Base


class SendTime(Base):
    """When one user of an experiment is to get their push: the timing arm, the local hour, the UTC time."""

    __tablename__ = "send_times"
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    timing: Mapped[str] = mapped_column(String(16))  # optimised / random
    local_hour: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # history / fallback / random
    scheduled_for: Mapped[datetime]
