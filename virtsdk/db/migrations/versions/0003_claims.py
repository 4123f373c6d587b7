"""Claims: resources the scheduler holds on a move's destination from the moment it
chooses it, so a concurrent boot or move cannot take the same free slot.

Revision ID: 0003_claims
Revises: 0002_bigint_byte_counts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_claims"
down_revision = "0002_bigint_byte_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consumer", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    op.create_index(op.f("ix_claims_consumer"), "claims", ["consumer"], unique=True)
    op.create_index(op.f("ix_claims_host"), "claims", ["host"])
