"""clawfarm API: the web backend's door to the farm (FastAPI).

Every state change runs one of the collection's playbooks through ansible-runner, tracked as a durable job
(SQLAlchemy; SQLite by default, PostgreSQL by URL). Start it with ``python -m api`` (see README, "API service").
"""
