/*-------------------------------------------------------------------------
 *
 * server_state.c
 *		  What a backend keeps of each foreign server between queries.
 *
 * Two things outlive a query, per server: the counters of nimble_stats
 * (stats.c) and what scans learned for the planner (estimates.c).  They
 * live together here, in one entry per server, behind
 * nimble_server_state(); the callers never see where.  (The rate limit
 * belongs to an API key and host, not to a server: throttle.c.)  Each
 * entry is a fixed-size struct, so that a later change can put them in
 * shared memory without touching them.
 *
 * With nimble_fdw preloaded, the counters are also added up for the whole
 * cluster, and the learned figures shared (shared_servers.c).
 *
 * When a server's catalog row changes (a syscache invalidation), its entry
 * is looked at again at its next use: a dropped server's entry starts over
 * (and leaves nimble_stats); an altered one forgets what it learned, since
 * its url may now lead to another account, and keeps its counters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_foreign_server.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

static HTAB *server_states = NULL;

/* A change to a foreign server's row: look at its entry again. */
static void
server_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS seq;
	NimbleServerState *state;

	if (server_states == NULL)
		return;
	hash_seq_init(&seq, server_states);
	while ((state = hash_seq_search(&seq)) != NULL)
	{
		if (hashvalue == 0 ||
			GetSysCacheHashValue1(FOREIGNSERVEROID,
								  ObjectIdGetDatum(state->serverid)) == hashvalue)
			state->recheck = true;
	}
}

/*
 * Watch foreign servers' catalog rows for changes.  Called from _PG_init.
 */
void
nimble_server_state_init(void)
{
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, server_changed, (Datum) 0);
}

/* A fresh entry for serverid: nothing counted since now. */
static void
start_over(NimbleServerState *state, Oid serverid)
{
	memset(state, 0, sizeof(NimbleServerState));
	state->serverid = serverid;
	state->stats.serverid = serverid;
	state->stats.since = GetCurrentTimestamp();
}

/*
 * After a change to the server's row: false, and the entry gone, if the
 * server was dropped; else what it learned forgotten.
 */
static bool
still_there(NimbleServerState *state)
{
	if (!state->recheck)
		return true;
	state->recheck = false;
	if (!SearchSysCacheExists1(FOREIGNSERVEROID, ObjectIdGetDatum(state->serverid)))
	{
		(void) hash_search(server_states, &state->serverid, HASH_REMOVE, NULL);
		return false;
	}
	state->nlearned = 0;
	return true;
}

/*
 * The backend's state for serverid, made when first asked for.  The
 * pointer stays valid for the backend's life (the server being dropped
 * recycles the entry, whose memory stays).
 */
NimbleServerState *
nimble_server_state(Oid serverid)
{
	NimbleServerState *state;
	bool		found;

	if (server_states == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(NimbleServerState);
		ctl.hcxt = TopMemoryContext;
		server_states = hash_create("nimble_fdw server state", 8, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	state = hash_search(server_states, &serverid, HASH_FIND, NULL);
	if (state && !still_there(state))
		state = NULL;
	if (state == NULL)
	{
		state = hash_search(server_states, &serverid, HASH_ENTER, &found);
		start_over(state, serverid);
	}
	return state;
}

/* Start walking the states of every server the backend has used. */
void
nimble_server_states_begin(NimbleServerStateWalk *walk)
{
	walk->started = server_states != NULL;
	if (walk->started)
		hash_seq_init(&walk->seq, server_states);
}

/* The next state of the walk, or NULL at its end; dropped servers skipped. */
NimbleServerState *
nimble_server_states_next(NimbleServerStateWalk *walk)
{
	NimbleServerState *state;

	if (!walk->started)
		return NULL;
	while ((state = hash_seq_search(&walk->seq)) != NULL)
	{
		if (still_there(state))
			return state;
	}
	walk->started = false;
	return NULL;
}

/*
 * Add what state counted since the last time to the server's shared
 * counters (when preloaded).  Never throws: a scan's reset callback calls
 * it.
 */
void
nimble_server_state_flush(NimbleServerState *state)
{
	nimble_shared_stats_add(state->serverid, &state->stats, &state->flushed);
}

/* The place of a learned figure named name, made when create; or NULL. */
double *
nimble_server_state_learned(NimbleServerState *state, const char *name, bool create)
{
	for (int i = 0; i < state->nlearned; i++)
	{
		if (strcmp(state->learned[i].name, name) == 0)
			return &state->learned[i].value;
	}
	if (!create || state->nlearned == NIMBLE_MAX_LEARNED)
		return NULL;			/* (a full table learns nothing more) */
	strlcpy(state->learned[state->nlearned].name, name, NAMEDATALEN);
	return &state->learned[state->nlearned++].value;
}
