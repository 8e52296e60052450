-- pgbdr-agent: least-privilege monitoring role for BDR 1.x / 2.0.
--
-- Run as a superuser in EVERY BDR database the agent monitors (the role
-- is cluster-wide: CREATE ROLE once per node; the GRANTs per database).
-- Then set the password, or use .pgpass / a certificate:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's BDR 1/2 probe reads:
--   bdr.bdr_get_local_node_name(), bdr.bdr_is_active_in_db()
--       C functions, EXECUTE is granted to PUBLIC by BDR itself;
--   bdr.bdr_nodes: node_status, node_read_only of the local node;
--   bdr.bdr_node_slots: node_name, walsender_active, replay_location;
--   pgbdr_agent.bdr_slot_positions(): replay_location where it is hidden;
--   bdr.bdr_connections: conn_dsn of the ready peers, per-node mode only
--       (its host, port and dbname: where to read this node's lag);
--   pg_current_wal_lsn(), pg_wal_lsn_diff(): PUBLIC.
-- No superuser, no replication privilege, no write access: the one
-- SECURITY DEFINER function below returns slot positions only.

CREATE ROLE pgbdr_monitor LOGIN;

GRANT USAGE ON SCHEMA bdr TO pgbdr_monitor;
GRANT SELECT ON bdr.bdr_nodes, bdr.bdr_node_slots TO pgbdr_monitor;
-- Per-node mode ([agent] peer_lag = catalog, the default): a node's own
-- lag is read from its peers, found through the DSNs in
-- bdr.bdr_connections. The agent keeps only their host, port and
-- dbname; but a DSN that embeds a password shows it to this role, so
-- keep replication passwords in .pgpass. Leave this grant out (the lag
-- then stays unknown) where that is not acceptable.
GRANT SELECT ON bdr.bdr_connections TO pgbdr_monitor;

-- BDR's functions are PUBLIC already; restate it in case a site revoked it.
GRANT EXECUTE ON FUNCTION bdr.bdr_get_local_node_name() TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION bdr.bdr_is_active_in_db() TO pgbdr_monitor;

-- Real BDR's bdr.bdr_node_slots is a view over pg_stat_replication, which
-- hides replay_location from roles without pg_read_all_stats (PostgreSQL
-- 10+) and from every non-superuser on 9.4/9.6, where that role does not
-- exist: the agent then sees the peers' walsender state but not their lag.
-- Grant pg_read_all_stats where it exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_read_all_stats') THEN
        GRANT pg_read_all_stats TO pgbdr_monitor;
    END IF;
END $$;

-- Everywhere (and the only way on 9.4/9.6): one SECURITY DEFINER function
-- in a schema of its own, owned by the superuser running this script, that
-- exposes the slots' peer names and replay positions and nothing else. The
-- agent uses it when it may execute it, and reads the view otherwise.
-- BDR replicates CREATE SCHEMA and CREATE FUNCTION but not GRANT: both are
-- idempotent, and the GRANTs below are needed in every database.
CREATE SCHEMA IF NOT EXISTS pgbdr_agent;
REVOKE ALL ON SCHEMA pgbdr_agent FROM PUBLIC;

CREATE OR REPLACE FUNCTION pgbdr_agent.bdr_slot_positions()
RETURNS TABLE (node_name text, replay_location pg_lsn)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT s.node_name::text, s.replay_location FROM bdr.bdr_node_slots s $$;

REVOKE ALL ON FUNCTION pgbdr_agent.bdr_slot_positions() FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbdr_agent TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION pgbdr_agent.bdr_slot_positions() TO pgbdr_monitor;
