"""Drains: the record of emptying a host for maintenance (one row per drain) and of
each of its guests (destination, attempts, migrations, measured time and downtime).

Revision ID: 0004_drains
Revises: 0003_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_drains"
down_revision = "0003_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("allow_cold", sa.Boolean(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drains")),
    )
    op.create_index(op.f("ix_drains_host"), "drains", ["host"])
    op.create_index(op.f("ix_drains_status"), "drains", ["status"])
    op.create_table(
        "drain_guests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("drain_id", sa.Integer(), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("dest_host", sa.String(length=255), nullable=True),
        sa.Column("migration_id", sa.Integer(), nullable=True),
        sa.Column("migration_ids", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("tried_hosts", sa.JSON(), nullable=False),
        sa.Column("estimated_s", sa.Float(), nullable=True),
        sa.Column("downtime_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["drain_id"], ["drains.id"],
                                name=op.f("fk_drain_guests_drain_id_drains")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drain_guests")),
    )
    op.create_index(op.f("ix_drain_guests_drain_id"), "drain_guests", ["drain_id"])
    op.create_index(op.f("ix_drain_guests_instance_uuid"), "drain_guests",
                    ["instance_uuid"])


def downgrade() -> None:
    op.drop_table("drain_guests")
    op.drop_table("drains")
