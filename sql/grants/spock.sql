-- pgbdr-agent: least-privilege monitoring role for Spock (pgEdge).
--
-- Run as a superuser in the Spock database of every node the agent
-- monitors (the role is cluster-wide, the GRANTs are per database).
-- Then set the password, or use .pgpass / a certificate:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's Spock probe reads:
--   spock.local_node joined with spock.node (the local node's name, and
--       the other nodes as peers);
--   spock.sub_show_status(): status of each subscription (replicating,
--       initializing, down, disabled, unknown). Its provider_dsn column,
--       which may hold a password, is never selected;
--   spock.lag_tracker: replication_lag and replication_lag_bytes. The
--       view reads spock's own tables with its owner's rights; the
--       functions it calls are EXECUTE-able by PUBLIC;
--   pg_replication_slots (spock_output slots: are the peers connected),
--   pg_is_in_recovery(): PUBLIC.
-- No superuser, no replication privilege, no pg_monitor.

CREATE ROLE pgbdr_monitor LOGIN;

GRANT USAGE ON SCHEMA spock TO pgbdr_monitor;
GRANT SELECT ON spock.local_node, spock.node, spock.lag_tracker TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION spock.sub_show_status(name) TO pgbdr_monitor;
