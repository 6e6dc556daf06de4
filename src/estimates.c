/*-------------------------------------------------------------------------
 *
 * estimates.c
 *		  Row counts learned from what scans saw, for the planner.
 *
 * Before any query the planner can only guess how many batches a server
 * has and how many rows one keyed request gives.  Every scan tells it what
 * it saw: the list's pagination.total, and the rows per key of keyed
 * requests.  The figures are per server (and resource), kept with the
 * server's other state (server_state.c), per backend and, with nimble_fdw
 * preloaded, for the cluster (shared_servers.c), so that a new backend
 * plans with what any backend saw.  The newest scan wins: the API changes under us, so an old average is no better than the
 * last observation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nimble_fdw.h"

/* The list of serverid said it holds total items. */
void
nimble_learn_list_total(Oid serverid, const NimbleEndpoint *list, double total)
{
	if (total >= 0)
	{
		double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
														list->path, true);

		if (place)
			*place = total;
		nimble_shared_learn(serverid, list->path, total);
	}
}

/* A keyed scan of resource gave rows rows for nkeys keys. */
void
nimble_learn_rows_per_key(Oid serverid, const char *resource,
						  double rows, double nkeys)
{
	if (nkeys > 0)
	{
		double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
														resource, true);

		if (place)
			*place = rows / nkeys;
		nimble_shared_learn(serverid, resource, rows / nkeys);
	}
}

/* What was learned, leaving *value alone when nothing was. */
void
nimble_learned_list_total(Oid serverid, const NimbleEndpoint *list, double *value)
{
	double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
													list->path, false);

	/* any backend's figure, when shared; else this backend's */
	if (nimble_shared_learned(serverid, list->path, value))
		return;
	if (place)
		*value = *place;
}

/* What was learned of a keyed request's rows, leaving *value alone when nothing was. */
void
nimble_learned_rows_per_key(Oid serverid, const char *resource, double *value)
{
	double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
													resource, false);

	if (nimble_shared_learned(serverid, resource, value))
		return;
	if (place)
		*value = *place;
}
