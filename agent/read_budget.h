/*
 * A cap on what one event-loop turn reads from a node's socket, so that
 * no server reply, however long, holds the loop or the memory for long.
 */
#ifndef PGBDR_READ_BUDGET_H
#define PGBDR_READ_BUDGET_H

#include <stddef.h>

/*
 * From now until read_budget_end(), reads on fd give at most `bytes`
 * in all; past that they fail with EAGAIN, as a drained socket does.
 */
void read_budget_begin(int fd, size_t bytes);
void read_budget_end(void);

#endif
