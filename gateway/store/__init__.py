"""The embedded CRM store: SQLite file, migrations, repositories, call log, CSV, demo seed."""
