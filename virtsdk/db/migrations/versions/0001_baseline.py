"""Baseline: the schema as ``create_all`` made it before migrations existed.

A database made then (every table, no version) is stamped at this revision by
``virtsdk-manage db sync`` and upgraded from here.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[Any]]:
    return [sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "flavors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flavors")),
        sa.UniqueConstraint("name", name=op.f("uq_flavors_name")),
    )
    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_actions")),
    )
    op.create_index(op.f("ix_instance_actions_instance_uuid"), "instance_actions",
                    ["instance_uuid"])
    op.create_index(op.f("ix_instance_actions_request_id"), "instance_actions",
                    ["request_id"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("vm_state", sa.String(length=32), nullable=False),
        sa.Column("task_state", sa.String(length=32), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.JSON(), nullable=False),
        sa.Column("old_flavor", sa.JSON(), nullable=True),
        sa.Column("new_flavor", sa.JSON(), nullable=True),
        sa.Column("image", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("system_metadata", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
    )
    op.create_index(op.f("ix_instances_deleted"), "instances", ["deleted"])
    op.create_index(op.f("ix_instances_host"), "instances", ["host"])
    op.create_index(op.f("ix_instances_uuid"), "instances", ["uuid"], unique=True)
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("migration_type", sa.String(length=32), nullable=False),
        sa.Column("source_host", sa.String(length=255), nullable=False),
        sa.Column("dest_host", sa.String(length=255), nullable=True),
        sa.Column("source_node", sa.String(length=255), nullable=True),
        sa.Column("dest_node", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("old_flavor", sa.JSON(), nullable=True),
        sa.Column("new_flavor", sa.JSON(), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        # 32-bit at the baseline; 0002_bigint_byte_counts widens them
        sa.Column("memory_total", sa.Integer(), nullable=False),
        sa.Column("memory_processed", sa.Integer(), nullable=False),
        sa.Column("memory_remaining", sa.Integer(), nullable=False),
        sa.Column("disk_total", sa.Integer(), nullable=False),
        sa.Column("disk_processed", sa.Integer(), nullable=False),
        sa.Column("disk_remaining", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
        sa.UniqueConstraint("uuid", name=op.f("uq_migrations_uuid")),
    )
    op.create_index(op.f("ix_migrations_instance_uuid"), "migrations", ["instance_uuid"])
    op.create_index(op.f("ix_migrations_status"), "migrations", ["status"])
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("binary", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("forced_down", sa.Boolean(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    op.create_index(op.f("ix_services_host"), "services", ["host"])
    op.create_table(
        "instance_action_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"], ["instance_actions.id"],
            name=op.f("fk_instance_action_events_action_id_instance_actions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_action_events")),
    )
    op.create_index(op.f("ix_instance_action_events_action_id"), "instance_action_events",
                    ["action_id"])
