"""ticket operations: quality-check results, encrypted recordings, hotspot alerts (one per spike)

- ``qa_results``: one row per ticketed call (UNIQUE ticket_id), the agent, score, passed, rules version and the full
  result with its evidence (turn texts encrypted when a key is configured);
- ``recordings``: the uploaded audio of a call, encrypted (Fernet) bytes; ``purged_at`` set and ``audio`` emptied
  when the retention period has passed (``hotline purge``);
- ``hotspot_alerts``: one row per spike alert pushed to the outbox, UNIQUE(dimension, key, window, window_start) so a
  spike is announced once however many requests or scheduler runs see it;
- ``tickets.caller`` widened to 320 characters on PostgreSQL (an email's sender address is the caller of an email
  ticket; SQLite does not enforce VARCHAR lengths, and recreating ``tickets`` there would cascade-delete events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def TS():  # UTC timestamps (serving.store.UTCDateTime stores naive UTC on SQLite)
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "qa_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.id", ondelete="CASCADE",
                                                            name="fk_qa_results_ticket_id"), nullable=False),
        sa.Column("agent", sa.String(200), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("rules_version", sa.String(64), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.UniqueConstraint("ticket_id", name="uq_qa_results_ticket_id"),
    )
    op.create_index("ix_qa_results_agent", "qa_results", ["agent"])
    op.create_index("ix_qa_results_created_at", "qa_results", ["created_at"])

    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.id", ondelete="CASCADE",
                                                            name="fk_recordings_ticket_id"), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("audio", sa.LargeBinary(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("purged_at", TS(), nullable=True),
        sa.UniqueConstraint("ticket_id", name="uq_recordings_ticket_id"),
    )
    op.create_index("ix_recordings_due", "recordings", ["purged_at", "created_at"])

    op.create_table(
        "hotspot_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("window_start", TS(), nullable=False),
        sa.Column("window_end", TS(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.UniqueConstraint("dimension", "key", "window", "window_start",
                            name="uq_hotspot_alerts_dimension_key_window_start"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("tickets", "caller", type_=sa.String(320), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("tickets", "caller", type_=sa.String(32), existing_nullable=True)
    op.drop_table("hotspot_alerts")
    op.drop_index("ix_recordings_due", table_name="recordings")
    op.drop_table("recordings")
    op.drop_index("ix_qa_results_created_at", table_name="qa_results")
    op.drop_index("ix_qa_results_agent", table_name="qa_results")
    op.drop_table("qa_results")
