/*-------------------------------------------------------------------------
 *
 * estimates.c
 *		  Row counts learned from what scans saw, for the planner.
 *
 * Before any query the planner can only guess how many batches a server
 * has and how many rows one keyed request gives.  Every scan tells it what
 * it saw: the list's pagination.total, and the rows per key of keyed
 * requests.  The figures are per backend and per server (and resource), kept
 * with the server's other state (server_state.c), and the newest scan
 * wins: the API changes under us, so an old average is no better than the
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
	}
}

/* What was learned, leaving *value alone when nothing was. */
void
nimble_learned_list_total(Oid serverid, const NimbleEndpoint *list, double *value)
{
	double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
													list->path, false);

	if (place)
		*value = *place;
}

/* What was learned of a keyed request's rows, leaving *value alone when nothing was. */
void
nimble_learned_rows_per_key(Oid serverid, const char *resource, double *value)
{
	double	   *place = nimble_server_state_learned(nimble_server_state(serverid),
													resource, false);

	if (place)
		*value = *place;
}
