"""escalations (one row per step of a ticket's SLA chain, done exactly once) and the notification outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def TS():  # UTC timestamps (serving.store.UTCDateTime stores naive UTC on SQLite)
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.id", ondelete="CASCADE",
                                                            name="fk_escalations_ticket_id"), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("to", sa.String(200), nullable=False),
        sa.Column("due_at", TS(), nullable=False),
        sa.Column("done_at", TS(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.UniqueConstraint("ticket_id", "level", name="uq_escalations_ticket_id_level"),
    )
    op.create_index("ix_escalations_pending", "escalations", ["done_at", "due_at"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=True),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("next_attempt_at", TS(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", TS(), nullable=True),
        sa.Column("parked_at", TS(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_to", JSON, nullable=False),
        sa.Column("locked_by", sa.String(300), nullable=True),
        sa.Column("locked_until", TS(), nullable=True),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_ticket_id", "outbox", ["ticket_id"])
    op.create_index("ix_outbox_due", "outbox", ["delivered_at", "parked_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("escalations")
