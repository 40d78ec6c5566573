"""initial schema: tickets, ticket_events, ticket_claims, customers, api_keys, audit_log

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def TS():  # UTC timestamps (serving.store.UTCDateTime stores naive UTC on SQLite)
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(32), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(4), nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("is_complaint", sa.Boolean(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("created_by_key", sa.String(32), nullable=True),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.Column("due_at", TS(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.UniqueConstraint("call_id", name="uq_tickets_call_id"),
    )
    op.create_index("ix_tickets_caller", "tickets", ["caller"])
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_index("ix_tickets_order_id", "tickets", ["order_id"])
    op.create_index("ix_tickets_created_by_key", "tickets", ["created_by_key"])
    op.create_index("ix_tickets_created_id", "tickets", ["created_at", "id"])

    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.id", ondelete="CASCADE",
                                                            name="fk_ticket_events_ticket_id"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("at", TS(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"])

    op.create_table(
        "ticket_claims",
        sa.Column("call_id", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("claimed_at", TS(), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
    )

    op.create_table(
        "customers",
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("vip_level", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("revoked_at", TS(), nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_ticket_id", "audit_log", ["ticket_id"])


def downgrade() -> None:
    for name in ("audit_log", "api_keys", "customers", "ticket_claims", "ticket_events", "tickets"):
        op.drop_table(name)
