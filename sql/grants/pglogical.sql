-- pgbdr-agent: least-privilege monitoring role for pglogical 2.x.
--
-- Run as a superuser in the pglogical database of every node the agent
-- monitors (the role is cluster-wide, the GRANTs are per database).
-- Then set the password, or use .pgpass / a certificate:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's pglogical probe reads:
--   pglogical.subscription and pglogical.node_interface, per-node mode
--       only: the interface DSN each subscription uses (its host, port
--       and dbname: where to read this node's lag);
--   pglogical.local_node joined with pglogical.node (the local node name);
--   pglogical.show_subscription_status(): one row per subscription with
--       its status (replicating, initializing, down, disabled, unknown).
--       EXECUTE is PUBLIC by default; the function reads the catalog
--       itself, but the schema needs USAGE.
-- No superuser, no replication privilege, no pg_monitor.

CREATE ROLE pgbdr_monitor LOGIN;

GRANT USAGE ON SCHEMA pglogical TO pgbdr_monitor;
GRANT SELECT ON pglogical.local_node, pglogical.node TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION pglogical.show_subscription_status(name) TO pgbdr_monitor;
GRANT SELECT ON pglogical.local_sync_status TO pgbdr_monitor;
-- Per-node mode ([agent] peer_lag = catalog, the default): a
-- subscriber's own lag is read from its providers' slots, found
-- through the interfaces its subscriptions use. The agent keeps only
-- their host, port and dbname; but an interface DSN that embeds a
-- password shows it to this role, so keep replication passwords in
-- .pgpass. Leave this grant out (the lag then stays unknown) where
-- that is not acceptable.
GRANT SELECT ON pglogical.subscription, pglogical.node_interface TO pgbdr_monitor;
