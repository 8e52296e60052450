-- pgbdr-agent: least-privilege monitoring role for native logical
-- replication (CREATE PUBLICATION / CREATE SUBSCRIPTION, PostgreSQL 10+).
--
-- Run as a superuser on every publisher and subscriber the agent
-- monitors. The role is cluster-wide; nothing here is per database.
-- Then set the password, or use .pgpass:
--     ALTER ROLE pgbdr_monitor PASSWORD '...';
--
-- What the agent's native logical probe reads, PUBLIC by default:
--   pg_subscription: subname, subenabled, subdbid. PostgreSQL revokes
--       only subconninfo (it may hold a password) from PUBLIC; the agent
--       never reads it;
--   pg_stat_subscription: whether each subscription's apply worker runs;
--   pg_subscription_rel: tables still in their initial copy;
--   pg_replication_slots: the publisher's pgoutput slots (connected?
--       how far behind?), pg_current_wal_lsn(), pg_is_in_recovery().
-- And, granted below, the subscriber's apply backlog (received but not
-- yet applied): the replication origins' progress, superuser-only by
-- default. Without these two grants the agent still works, but a
-- subscriber's lag is unknown. They expose LSNs, nothing else.
-- No superuser, no replication privilege, no pg_monitor.

CREATE ROLE pgbdr_monitor LOGIN;

GRANT SELECT ON pg_catalog.pg_replication_origin_status TO pgbdr_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO pgbdr_monitor;
