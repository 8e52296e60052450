-- pgbdr-agent: least-privilege monitoring role for a plain PostgreSQL
-- server (no replication to watch: reachable and writable is ready).
--
-- Run once as a superuser. Then set the password, or use .pgpass:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's plain probe reads: SELECT 1, pg_is_in_recovery() and
-- the transaction_read_only / default_transaction_read_only settings,
-- all available to any role. CONNECT on the database is PUBLIC by
-- default; if the site revoked it, grant it back:
--     GRANT CONNECT ON DATABASE <dbname> TO pgbdr_monitor;
-- No other privilege is needed.

CREATE ROLE pgbdr_monitor LOGIN;
