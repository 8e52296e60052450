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
--   pg_current_wal_lsn(), pg_wal_lsn_diff(): PUBLIC.
-- No superuser, no replication privilege, no write access.

CREATE ROLE pgbdr_monitor LOGIN;

GRANT USAGE ON SCHEMA bdr TO pgbdr_monitor;
GRANT SELECT ON bdr.bdr_nodes, bdr.bdr_node_slots TO pgbdr_monitor;

-- BDR's functions are PUBLIC already; restate it in case a site revoked it.
GRANT EXECUTE ON FUNCTION bdr.bdr_get_local_node_name() TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION bdr.bdr_is_active_in_db() TO pgbdr_monitor;

-- Real BDR's bdr.bdr_node_slots is a view over pg_stat_replication, which
-- hides the *_location columns from roles without pg_read_all_stats
-- (PostgreSQL 10+): without it the agent sees the peers' walsender state
-- but not their lag. Grant it where that role exists (not on 9.4/9.6).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_read_all_stats') THEN
        GRANT pg_read_all_stats TO pgbdr_monitor;
    END IF;
END $$;
