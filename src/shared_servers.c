/*-------------------------------------------------------------------------
 *
 * shared_servers.c
 *		  What the backends of a cluster share of each foreign server: the
 *		  counters of nimble_stats and the figures scans learned.
 *
 * With nimble_fdw in shared_preload_libraries, each server (of a database)
 * has an entry in shared memory (shmem.c), NIMBLE_SHARED_SERVERS in all;
 * the least recently used one is reused for a new server.  Without the
 * preload nothing here holds anything, and server_state.c's backend-local
 * entries are all there is.
 *
 * Counters are counted in the backend, where they are bumped with no lock
 * (curl's callbacks bump them), and what a backend counted since it last
 * did so is added to the shared entry when one of its scans ends and when
 * nimble_stats is read (nimble_shared_stats_add).  The learned figures are
 * written through and read from the entry, together with the xmin of the
 * server's catalog row they were learned under: after an ALTER SERVER
 * (whose url may lead to another account) they no longer count, in every
 * backend at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_foreign_server.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

/* servers (of all databases) the shared memory holds */
#define NIMBLE_SHARED_SERVERS 128

typedef struct SharedServer
{
	Oid			dbid;			/* InvalidOid: a free entry */
	Oid			serverid;
	TimestampTz last_used;
	NimbleServerStats stats;
	TransactionId learned_xmin; /* the row the figures were learned under */
	int			nlearned;
	struct
	{
		char		name[NAMEDATALEN];
		double		value;
	}			learned[NIMBLE_MAX_LEARNED];
} SharedServer;

static SharedServer *shared_servers = NULL;

/* Size of the shared entries, for shmem.c. */
Size
nimble_shared_servers_size(void)
{
	return mul_size(NIMBLE_SHARED_SERVERS, sizeof(SharedServer));
}

/* Take the shared entries at area (shmem.c); init: the area is new. */
void
nimble_shared_servers_attach(void *area, bool init)
{
	shared_servers = (SharedServer *) area;
	if (init)
		memset(area, 0, nimble_shared_servers_size());
}

/* Are servers' figures shared (nimble_fdw preloaded)? */
bool
nimble_shared_servers_active(void)
{
	return shared_servers != NULL;
}

/*
 * serverid's entry in this database, made (the least recently used one
 * reused) when create; NULL if there is none.  The shared lock is held.
 */
static SharedServer *
find_entry(Oid serverid, bool create)
{
	SharedServer *reuse = NULL;

	for (int i = 0; i < NIMBLE_SHARED_SERVERS; i++)
	{
		SharedServer *e = &shared_servers[i];

		if (e->dbid == MyDatabaseId && e->serverid == serverid)
			return e;
		if (reuse == NULL || e->dbid == InvalidOid ||
			(reuse->dbid != InvalidOid && e->last_used < reuse->last_used))
			reuse = e;
	}
	if (!create)
		return NULL;
	memset(reuse, 0, sizeof(SharedServer));
	reuse->dbid = MyDatabaseId;
	reuse->serverid = serverid;
	reuse->stats.serverid = serverid;
	reuse->stats.since = GetCurrentTimestamp();
	return reuse;
}

/* The count of status in stats' table (0 if it is not there). */
static int64
status_count(const NimbleServerStats *stats, long status)
{
	for (int i = 0; i < stats->nstatus; i++)
	{
		if (stats->by_status[i].status == status)
			return stats->by_status[i].count;
	}
	return 0;
}

/*
 * Add what counted has counted since flushed to serverid's shared entry,
 * and make flushed equal to counted.  Never throws (a scan's reset
 * callback calls it); takes no catalog lookups.
 */
void
nimble_shared_stats_add(Oid serverid, const NimbleServerStats *counted,
						NimbleServerStats *flushed)
{
	LWLock	   *lock;
	SharedServer *e;
	NimbleServerStats *to;

	if (shared_servers == NULL)
		return;
	lock = nimble_shmem_lock();
	e = find_entry(serverid, true);
	e->last_used = GetCurrentTimestamp();
	to = &e->stats;
	to->scans += counted->scans - flushed->scans;
	to->requests += counted->requests - flushed->requests;
	to->pages += counted->pages - flushed->pages;
	to->bytes += counted->bytes - flushed->bytes;
	to->retries += counted->retries - flushed->retries;
	to->cache_hits += counted->cache_hits - flushed->cache_hits;
	to->connections += counted->connections - flushed->connections;
	to->errors += counted->errors - flushed->errors;
	to->other_errors += counted->other_errors - flushed->other_errors;
	to->network_wait_us += counted->network_wait_us - flushed->network_wait_us;
	to->rate_limit_wait_us += counted->rate_limit_wait_us - flushed->rate_limit_wait_us;
	for (int i = 0; i < counted->nstatus; i++)
	{
		long		status = counted->by_status[i].status;
		int64		n = counted->by_status[i].count - status_count(flushed, status);

		if (n != 0)
			nimble_stats_add_status(to, status, n);
	}
	nimble_shmem_unlock(lock);
	*flushed = *counted;
}

/* serverid's shared counters into *out; false if it has none. */
bool
nimble_shared_stats_read(Oid serverid, NimbleServerStats *out)
{
	LWLock	   *lock;
	SharedServer *e;

	if (shared_servers == NULL)
		return false;
	lock = nimble_shmem_lock();
	e = find_entry(serverid, false);
	if (e)
		*out = e->stats;
	nimble_shmem_unlock(lock);
	return e != NULL;
}

/* The servers of this database with shared counters, into *ids (palloc'd). */
int
nimble_shared_stats_servers(Oid **ids)
{
	LWLock	   *lock;
	int			n = 0;

	*ids = palloc(sizeof(Oid) * NIMBLE_SHARED_SERVERS);
	if (shared_servers == NULL)
		return 0;
	lock = nimble_shmem_lock();
	for (int i = 0; i < NIMBLE_SHARED_SERVERS; i++)
	{
		if (shared_servers[i].dbid == MyDatabaseId)
			(*ids)[n++] = shared_servers[i].serverid;
	}
	nimble_shmem_unlock(lock);
	return n;
}

/* Start this database's shared counters again from zero, at now. */
void
nimble_shared_stats_reset(TimestampTz now)
{
	LWLock	   *lock;

	if (shared_servers == NULL)
		return;
	lock = nimble_shmem_lock();
	for (int i = 0; i < NIMBLE_SHARED_SERVERS; i++)
	{
		SharedServer *e = &shared_servers[i];

		if (e->dbid != MyDatabaseId)
			continue;
		memset(&e->stats, 0, sizeof(NimbleServerStats));
		e->stats.serverid = e->serverid;
		e->stats.since = now;
	}
	nimble_shmem_unlock(lock);
}

/*
 * The xmin of serverid's catalog row: it changes with every ALTER SERVER.
 * InvalidTransactionId if the server is gone.
 */
static TransactionId
server_row_xmin(Oid serverid)
{
	HeapTuple	tuple = SearchSysCache1(FOREIGNSERVEROID, ObjectIdGetDatum(serverid));
	TransactionId xmin;

	if (!HeapTupleIsValid(tuple))
		return InvalidTransactionId;
	xmin = HeapTupleHeaderGetXmin(tuple->t_data);
	ReleaseSysCache(tuple);
	return xmin;
}

/* Share a figure serverid's scans learned, named name. */
void
nimble_shared_learn(Oid serverid, const char *name, double value)
{
	TransactionId xmin;
	LWLock	   *lock;
	SharedServer *e;
	int			i;

	if (shared_servers == NULL)
		return;
	xmin = server_row_xmin(serverid);	/* before the lock: it may throw */
	if (!TransactionIdIsValid(xmin))
		return;
	lock = nimble_shmem_lock();
	e = find_entry(serverid, true);
	e->last_used = GetCurrentTimestamp();
	if (e->learned_xmin != xmin)
	{
		/* learned under another version of the server: forgotten */
		e->nlearned = 0;
		e->learned_xmin = xmin;
	}
	for (i = 0; i < e->nlearned; i++)
	{
		if (strcmp(e->learned[i].name, name) == 0)
			break;
	}
	if (i == e->nlearned && e->nlearned < NIMBLE_MAX_LEARNED)
	{
		strlcpy(e->learned[i].name, name, NAMEDATALEN);
		e->nlearned++;
	}
	if (i < e->nlearned)
		e->learned[i].value = value;
	nimble_shmem_unlock(lock);
}

/*
 * A figure some backend learned of serverid, named name, under the
 * server's current options: true and *value if there is one.
 */
bool
nimble_shared_learned(Oid serverid, const char *name, double *value)
{
	TransactionId xmin;
	LWLock	   *lock;
	SharedServer *e;
	bool		found = false;

	if (shared_servers == NULL)
		return false;
	xmin = server_row_xmin(serverid);
	if (!TransactionIdIsValid(xmin))
		return false;
	lock = nimble_shmem_lock();
	e = find_entry(serverid, false);
	if (e && e->learned_xmin == xmin)
	{
		for (int i = 0; i < e->nlearned; i++)
		{
			if (strcmp(e->learned[i].name, name) == 0)
			{
				*value = e->learned[i].value;
				found = true;
				break;
			}
		}
	}
	nimble_shmem_unlock(lock);
	return found;
}
