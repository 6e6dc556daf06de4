/*-------------------------------------------------------------------------
 *
 * estimates.c
 *		  Row counts learned from what scans saw, for the planner.
 *
 * Before any query the planner can only guess how many batches a server
 * has and how many rows one keyed request gives.  Every scan tells it what
 * it saw: the list's pagination.total, and the rows per key of keyed
 * requests.  The figures are per backend and per server (and resource), and
 * the newest scan wins: the API changes under us, so an old average is no
 * better than the last observation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "nimble_fdw.h"

typedef struct LearnedKey
{
	Oid			serverid;
	char		resource[NAMEDATALEN];	/* a resource, or a list endpoint's
										 * path ("/batches") */
} LearnedKey;

typedef struct Learned
{
	LearnedKey	key;
	double		value;			/* list: items; resource: rows per key */
} Learned;

static HTAB *learned = NULL;

static Learned *
learned_entry(Oid serverid, const char *resource, bool create)
{
	LearnedKey	key;
	bool		found;
	Learned    *entry;

	if (learned == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(LearnedKey);
		ctl.entrysize = sizeof(Learned);
		ctl.hcxt = TopMemoryContext;
		learned = hash_create("nimble_fdw estimates", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.serverid = serverid;
	strlcpy(key.resource, resource, NAMEDATALEN);
	entry = hash_search(learned, &key, create ? HASH_ENTER : HASH_FIND, &found);
	return entry;
}

/* The list of serverid said it holds total items. */
void
nimble_learn_list_total(Oid serverid, const NimbleEndpoint *list, double total)
{
	if (total >= 0)
		learned_entry(serverid, list->path, true)->value = total;
}

/* A keyed scan of resource gave rows rows for nkeys keys. */
void
nimble_learn_rows_per_key(Oid serverid, const char *resource,
						  double rows, double nkeys)
{
	if (nkeys > 0)
		learned_entry(serverid, resource, true)->value = rows / nkeys;
}

/* What was learned, leaving *value alone when nothing was. */
void
nimble_learned_list_total(Oid serverid, const NimbleEndpoint *list, double *value)
{
	Learned    *entry = learned_entry(serverid, list->path, false);

	if (entry)
		*value = entry->value;
}

void
nimble_learned_rows_per_key(Oid serverid, const char *resource, double *value)
{
	Learned    *entry = learned_entry(serverid, resource, false);

	if (entry)
		*value = entry->value;
}
