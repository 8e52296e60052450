/*
 * A peer's address from a DSN its catalog holds. The catalog's DSN is
 * what the peers use to replicate from each other: it may carry a
 * replication user and password, sslmode, options. Only where the peer
 * is (host, hostaddr, port, dbname) is taken from it; who the agent
 * connects as, and how, stays what the operator configured for the
 * node. Pure: text in, a bounded struct out.
 */
#ifndef PGBDR_PEER_DSN_H
#define PGBDR_PEER_DSN_H

#include "status.h"

/*
 * Fill out->host, hostaddr, port and dbname from dsn (key=value or URI)
 * and set out->usable; out->name is left alone. Not usable: the DSN
 * does not parse, names no network host (a socket directory is a path
 * on the peer's machine, and here would reach this node), or a value
 * does not fit or holds characters no address has. Nothing of the DSN
 * is kept elsewhere, and libpq's copy is wiped before it is freed.
 */
void peer_dsn_filter(const char *dsn, struct peer_address *out);

#endif
