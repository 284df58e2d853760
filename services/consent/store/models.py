"""Tables owned by consent. Only store/ touches the database."""

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)
