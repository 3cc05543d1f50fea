from services.recipients.schema import metadata
from shared.alembic_env import run

run(metadata, version_table="alembic_version_recipients")
