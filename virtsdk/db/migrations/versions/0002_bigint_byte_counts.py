"""64-bit byte counters on migrations (a guest with 4 GiB of memory overflowed them).

Revision ID: 0002_bigint_byte_counts
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_bigint_byte_counts"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

BYTE_COUNTS = ("memory_total", "memory_processed", "memory_remaining",
               "disk_total", "disk_processed", "disk_remaining")


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        for column in BYTE_COUNTS:
            batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                               existing_nullable=False)
