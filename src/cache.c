/*-------------------------------------------------------------------------
 *
 * cache.c
 *		  A per-backend cache of API responses, for the cache_ttl option.
 *
 * A dashboard that runs the same query every few seconds, or a join that
 * reads the same batch twice, need not ask the API again for what it just
 * said.  With a server's cache_ttl above zero, every response body that
 * decoded cleanly is kept, keyed by the server, the api key (as a 64-bit
 * hash: the key itself is not kept again) and the full url, and answers
 * the same request for cache_ttl seconds after the request that fetched it
 * was sent.  Measuring the age from the moment the request left makes the
 * guarantee hold: a cached answer is never older than the TTL.
 *
 * Entries live in their own memory context under TopMemoryContext, and the
 * least recently used ones are dropped to keep the total under
 * nimble_fdw.cache_size.  nimble_cache_clear() empties the cache of the
 * backend that calls it.  With nimble_fdw preloaded, the cache is the
 * cluster's instead, in shared memory of nimble_fdw.cache_size
 * (shared_cache.c), under the same keys.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/hashfn.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

PG_FUNCTION_INFO_V1(nimble_cache_clear);

typedef struct CacheEntry
{
	uint64		hash;			/* hash key: of scope and url */
	Oid			serverid;		/* the rest tells collisions apart */
	uint64		key_hash;
	char	   *url;
	char	   *body;			/* NUL-terminated */
	size_t		len;
	TimestampTz sent_at;		/* when the request that fetched it left */
	dlist_node	lru;			/* most recently used first */
} CacheEntry;

static HTAB *cache = NULL;
static MemoryContext cache_cxt = NULL;
static dlist_head cache_lru = DLIST_STATIC_INIT(cache_lru);
static size_t cache_bytes = 0;
static int	cache_size_kb = 65536;

/*
 * Register nimble_fdw.cache_size, the memory the response cache may use.
 * Called from _PG_init.
 */
void
nimble_cache_init(void)
{
	/* preloaded, it sizes the cluster's cache in shared memory, at start */
	bool		shared = process_shared_preload_libraries_in_progress;

	DefineCustomIntVariable("nimble_fdw.cache_size",
							shared ?
							"Shared memory for the cluster's cache of API responses, for cache_ttl." :
							"Memory a backend may use to keep API responses for cache_ttl.",
							"The least recently used responses are dropped beyond it.",
							&cache_size_kb,
							65536, 0, MAX_KILOBYTES,
							shared ? PGC_POSTMASTER : PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
}

/* nimble_fdw.cache_size in bytes (shmem.c sizes the shared cache by it). */
Size
nimble_cache_size_bytes(void)
{
	return (Size) cache_size_kb * 1024;
}

static size_t
entry_size(CacheEntry *entry)
{
	return entry->len + strlen(entry->url) + sizeof(CacheEntry);
}

static void
drop_entry(CacheEntry *entry)
{
	cache_bytes -= entry_size(entry);
	dlist_delete(&entry->lru);
	pfree(entry->url);
	pfree(entry->body);
	(void) hash_search(cache, &entry->hash, HASH_REMOVE, NULL);
}

static uint64
cache_hash(Oid serverid, uint64 key_hash, const char *url)
{
	return hash_bytes_extended((const unsigned char *) url, strlen(url),
							   key_hash ^ serverid);
}

/*
 * The cached body of url, fresh within ttl_s seconds of now, as a malloc'd
 * copy (so that the caller owns it like a body just received); or NULL.
 */
char *
nimble_cache_lookup(Oid serverid, uint64 key_hash, const char *url,
					int ttl_s, TimestampTz now, size_t *len)
{
	uint64		hash;
	CacheEntry *entry;
	char	   *copy;

	if (ttl_s <= 0)
		return NULL;
	hash = cache_hash(serverid, key_hash, url);
	if (nimble_shared_cache_active())
		return nimble_shared_cache_lookup(hash, serverid, key_hash, url, ttl_s,
										  now, len);
	if (cache == NULL)
		return NULL;
	entry = hash_search(cache, &hash, HASH_FIND, NULL);
	if (entry == NULL || entry->serverid != serverid ||
		entry->key_hash != key_hash || strcmp(entry->url, url) != 0)
		return NULL;
	if (now - entry->sent_at >= (TimestampTz) ttl_s * USECS_PER_SEC)
	{
		drop_entry(entry);
		return NULL;
	}

	copy = malloc(entry->len + 1);
	if (copy == NULL)
		return NULL;			/* ask the API instead */
	memcpy(copy, entry->body, entry->len + 1);
	*len = entry->len;
	dlist_move_head(&cache_lru, &entry->lru);
	return copy;
}

/* Keep a copy of body as the answer to url, sent at sent_at. */
void
nimble_cache_store(Oid serverid, uint64 key_hash, const char *url,
				   TimestampTz sent_at, const char *body, size_t len)
{
	uint64		hash = cache_hash(serverid, key_hash, url);
	size_t		limit = (size_t) cache_size_kb * 1024;
	size_t		need = len + strlen(url) + sizeof(CacheEntry);
	CacheEntry *entry;
	char	   *body_copy;
	char	   *url_copy;
	bool		found;

	if (nimble_shared_cache_active())
	{
		nimble_shared_cache_store(hash, serverid, key_hash, url, sent_at, body, len);
		return;
	}
	if (need > limit)
		return;
	if (cache == NULL)
	{
		HASHCTL		ctl;

		cache_cxt = AllocSetContextCreate(TopMemoryContext,
										  "nimble_fdw response cache",
										  ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(CacheEntry);
		ctl.hcxt = cache_cxt;
		cache = hash_create("nimble_fdw response cache", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	/* a response that does not fit is simply not kept */
	body_copy = MemoryContextAllocExtended(cache_cxt, len + 1,
										   MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (body_copy == NULL)
		return;
	url_copy = MemoryContextStrdup(cache_cxt, url);
	memcpy(body_copy, body, len);
	body_copy[len] = '\0';

	entry = hash_search(cache, &hash, HASH_FIND, NULL);
	if (entry)
		drop_entry(entry);
	while (cache_bytes + need > limit && !dlist_is_empty(&cache_lru))
		drop_entry(dlist_tail_element(CacheEntry, lru, &cache_lru));

	entry = hash_search(cache, &hash, HASH_ENTER, &found);
	entry->serverid = serverid;
	entry->key_hash = key_hash;
	entry->url = url_copy;
	entry->body = body_copy;
	entry->len = len;
	entry->sent_at = sent_at;
	dlist_push_head(&cache_lru, &entry->lru);
	cache_bytes += need;
}

/* What the cache holds now, for the statistics. */
void
nimble_cache_usage(int64 *entries, int64 *bytes)
{
	if (nimble_shared_cache_active())
	{
		nimble_shared_cache_usage(entries, bytes);
		return;
	}
	*entries = cache ? hash_get_num_entries(cache) : 0;
	*bytes = (int64) cache_bytes;
}

/*
 * nimble_cache_clear() returns bigint: drop every response this backend
 * keeps (with nimble_fdw preloaded: the cluster's cache), and say how many
 * there were.
 */
Datum
nimble_cache_clear(PG_FUNCTION_ARGS)
{
	int64		dropped = cache ? hash_get_num_entries(cache) : 0;

	if (nimble_shared_cache_active())
		dropped += nimble_shared_cache_clear();

	if (cache_cxt)
		MemoryContextDelete(cache_cxt);
	cache_cxt = NULL;
	cache = NULL;
	dlist_init(&cache_lru);
	cache_bytes = 0;
	PG_RETURN_INT64(dropped);
}
