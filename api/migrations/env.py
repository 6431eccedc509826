"""Alembic environment of the job store. The service runs it in-process (:func:`api.db.migrate` passes its
connection); an operator can run ``alembic -c api/alembic.ini upgrade head`` with ``CLAWFARM_API_DATABASE_URL`` set."""
from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=None, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = os.environ.get("CLAWFARM_API_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CLAWFARM_API_DATABASE_URL to the job store's SQLAlchemy URL")
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
