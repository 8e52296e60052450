-- pgbdr-agent: least-privilege monitoring role for physical (streaming)
-- replication: a primary and its hot standbys.
--
-- Run once on the PRIMARY as a superuser: the role replicates to the
-- standbys with everything else. Then set the password, or use .pgpass:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's physical probe reads:
--   pg_is_in_recovery(), pg_last_wal_receive_lsn(),
--   pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(),
--   pg_current_wal_lsn(): PUBLIC;
--   pg_stat_wal_receiver (standby) and pg_stat_replication (primary):
--       their status and LSN columns are NULL for roles without
--       pg_read_all_stats, so the role needs pg_monitor (which includes
--       pg_read_all_stats and nothing that can write).

CREATE ROLE pgbdr_monitor LOGIN;

GRANT pg_monitor TO pgbdr_monitor;
