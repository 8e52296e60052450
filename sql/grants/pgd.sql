-- pgbdr-agent: least-privilege monitoring role for EDB Postgres
-- Distributed: BDR 3.7, PGD 4 and PGD 5.
--
-- Run as a superuser (or bdr_superuser) in the PGD database of every
-- node the agent monitors. The role is cluster-wide: CREATE ROLE once
-- per node (PGD replicates roles only if DDL replication covers them);
-- the GRANTs are per database. Then set the password, or use .pgpass:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- Real PGD ships the role bdr_monitor, made for exactly this: it may
-- read the monitoring views and run the bdr.monitor_* functions. The
-- agent's PGD probe reads:
--   bdr.local_node_summary, bdr.node_summary   node names and join states
--   bdr.node_slots                             peers' slots, replay lag
--   bdr.subscription_summary                   incoming subscriptions
--   bdr.group_raft_details                     Raft leader per group
--   bdr.monitor_local_replslots()              PGD's OK/WARNING/CRITICAL
--   bdr.node_group_routing_summary (PGD 5)     the group's write leader
--   bdr.node_group (3.7, 4)                    subscriber-only groups
--   pg_is_in_recovery(), default_transaction_read_only: PUBLIC
--   bdr.node_summary.interface_connstr         per-node mode only: where the
--       peers this node subscribes to are (host, port and dbname are kept)
-- No superuser, no replication privilege, no write access.
--
-- Per-node mode ([agent] peer_lag = catalog, the default): a node's own
-- lag is in its peers' bdr.node_slots, and the agent finds the peers
-- through interface_connstr, which bdr_monitor (and the grant on
-- bdr.node_summary below) may read. The agent keeps only the address and
-- connects as this role; but a DSN that embeds a password shows it to
-- this role, so keep replication passwords in .pgpass, or set
-- peer_lag = off (the lag then stays unknown).
--
-- Where bdr_monitor does not exist (the test emulations of the PGD
-- catalog, tests/integration/fixtures/pgd*_emulation.sql), the same
-- reads are granted object by object.

CREATE ROLE pgbdr_monitor LOGIN;

DO $$
DECLARE
    rel text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bdr_monitor') THEN
        EXECUTE 'GRANT bdr_monitor TO pgbdr_monitor';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA bdr TO pgbdr_monitor;
    FOREACH rel IN ARRAY ARRAY['local_node_summary', 'node_summary', 'node_slots',
                               'subscription_summary', 'group_raft_details',
                               'node_group_routing_summary', 'node_group'] LOOP
        IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'bdr' AND c.relname = rel) THEN
            EXECUTE format('GRANT SELECT ON bdr.%I TO pgbdr_monitor', rel);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'bdr' AND p.proname = 'monitor_local_replslots') THEN
        GRANT EXECUTE ON FUNCTION bdr.monitor_local_replslots() TO pgbdr_monitor;
    END IF;
END $$;
