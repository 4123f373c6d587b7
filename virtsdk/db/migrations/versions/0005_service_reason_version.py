"""Service records: why an operator disabled a service, and the release it runs.

``virtsdk-manage service disable HOST --reason TEXT`` stores ``disabled_reason``; every
service writes its virtsdk release into ``version`` when it registers, so ``service
list`` shows a rolling upgrade's progress.

Revision ID: 0005_service_reason_version
Revises: 0004_drains
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_service_reason_version"
down_revision = "0004_drains"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("disabled_reason", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("version", sa.String(length=32), nullable=False,
                                   server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("version")
        batch.drop_column("disabled_reason")
