/* Placeholder until the SPOP server lands (being written now). */
#include <stdio.h>

#include "spop_server.h"

struct spop_server *spop_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen)
{
	snprintf(err, errlen, "spoe_listen is not supported yet");
	return NULL;
}

void spop_server_free(struct spop_server *s)
{
}
