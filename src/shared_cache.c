/*-------------------------------------------------------------------------
 *
 * shared_cache.c
 *		  The response cache in shared memory, when nimble_fdw is preloaded.
 *
 * One cache for the cluster, of nimble_fdw.cache_size, fixed at server
 * start: a response one backend fetched answers the same request in any
 * other, within the server's cache_ttl.  An entry is keyed as in the
 * backend's cache (cache.c): the database, the server, a hash of the API
 * key (never the key) and the full url, so a session never receives an
 * answer fetched with another key; a changed url or key asks anew.
 *
 * The memory is cut into blocks of NIMBLE_CACHE_BLOCK bytes; an entry (its
 * url, then its body) is a chain of them, found through a hash table of
 * chained entry numbers, and the least recently used entries give their
 * blocks to a new one.  Everything is numbers into fixed arrays, so the
 * area has no pointers and no allocator.  One LWLock of its own guards it
 * (a copy in or out of a large body must not hold up the request budgets),
 * and nothing done under it can throw: the copy out is malloc'd, and a
 * malloc that fails is a miss.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

#define NIMBLE_CACHE_BLOCK 8192
#define NO_ENTRY (-1)

typedef struct CacheSlot
{
	uint64		hash;			/* of the key; 0 with in_use false */
	bool		in_use;
	Oid			dbid;
	Oid			serverid;
	uint64		key_hash;
	int32		url_len;
	int64		len;			/* of the body */
	TimestampTz sent_at;
	int32		first_block;
	int32		nblocks;
	int32		chain_next;		/* in its hash bucket, or NO_ENTRY */
	int32		lru_prev;		/* towards the most recently used */
	int32		lru_next;
} CacheSlot;

typedef struct SharedCache
{
	int32		nblocks;
	int32		nslots;			/* as many as blocks: an entry has one at least */
	int32		nbuckets;
	int32		free_blocks;	/* how many */
	int32		free_block;		/* first of the free list */
	int32		free_slot;		/* first of the free slots (by chain_next) */
	int32		lru_head;		/* most recently used */
	int32		lru_tail;
	int64		entries;
	int64		bytes;
	/* then: int32 bucket[nbuckets], int32 block_next[nblocks], */
	/* CacheSlot slot[nslots], char data[nblocks][NIMBLE_CACHE_BLOCK] */
} SharedCache;

static SharedCache *shared_cache = NULL;
static LWLock *cache_lock = NULL;
static int32 *buckets;
static int32 *block_next;
static CacheSlot *slots;
static char *data;

static int32
blocks_for(Size bytes)
{
	return (int32) Min(bytes / NIMBLE_CACHE_BLOCK, PG_INT32_MAX / 2);
}

static int32
buckets_for(int32 nslots)
{
	int32		n = 1;

	while (n < nslots && n < (1 << 28))
		n <<= 1;
	return n;
}

/* Size of a shared cache of bytes (0: none), for shmem.c. */
Size
nimble_shared_cache_size(Size bytes)
{
	int32		nblocks = blocks_for(bytes);
	Size		size;

	if (nblocks == 0)
		return 0;
	size = MAXALIGN(sizeof(SharedCache));
	size = add_size(size, MAXALIGN(mul_size(buckets_for(nblocks), sizeof(int32))));
	size = add_size(size, MAXALIGN(mul_size(nblocks, sizeof(int32))));
	size = add_size(size, MAXALIGN(mul_size(nblocks, sizeof(CacheSlot))));
	return add_size(size, mul_size(nblocks, NIMBLE_CACHE_BLOCK));
}

/* Point the arrays into the area. */
static void
map_area(void)
{
	char	   *p = (char *) shared_cache + MAXALIGN(sizeof(SharedCache));

	buckets = (int32 *) p;
	p += MAXALIGN(sizeof(int32) * shared_cache->nbuckets);
	block_next = (int32 *) p;
	p += MAXALIGN(sizeof(int32) * shared_cache->nblocks);
	slots = (CacheSlot *) p;
	p += MAXALIGN(sizeof(CacheSlot) * shared_cache->nslots);
	data = p;
}

/*
 * Take the shared cache of bytes at area, guarded by lock (shmem.c, at
 * server start); init: the area is new.
 */
void
nimble_shared_cache_attach(void *area, Size bytes, LWLock *lock, bool init)
{
	int32		nblocks = blocks_for(bytes);

	if (nblocks == 0)
		return;
	shared_cache = (SharedCache *) area;
	cache_lock = lock;
	if (init)
	{
		shared_cache->nblocks = nblocks;
		shared_cache->nslots = nblocks;
		shared_cache->nbuckets = buckets_for(nblocks);
	}
	map_area();
	if (!init)
		return;
	for (int32 i = 0; i < shared_cache->nbuckets; i++)
		buckets[i] = NO_ENTRY;
	for (int32 i = 0; i < nblocks; i++)
		block_next[i] = i + 1 < nblocks ? i + 1 : NO_ENTRY;
	for (int32 i = 0; i < shared_cache->nslots; i++)
	{
		memset(&slots[i], 0, sizeof(CacheSlot));
		slots[i].chain_next = i + 1 < shared_cache->nslots ? i + 1 : NO_ENTRY;
	}
	shared_cache->free_block = 0;
	shared_cache->free_blocks = nblocks;
	shared_cache->free_slot = 0;
	shared_cache->lru_head = shared_cache->lru_tail = NO_ENTRY;
	shared_cache->entries = 0;
	shared_cache->bytes = 0;
}

/* Is the response cache the cluster's? */
bool
nimble_shared_cache_active(void)
{
	return shared_cache != NULL;
}

/* ---- under the lock from here on: nothing may throw ---- */

static void
lru_unlink(int32 s)
{
	CacheSlot  *e = &slots[s];

	if (e->lru_prev != NO_ENTRY)
		slots[e->lru_prev].lru_next = e->lru_next;
	else
		shared_cache->lru_head = e->lru_next;
	if (e->lru_next != NO_ENTRY)
		slots[e->lru_next].lru_prev = e->lru_prev;
	else
		shared_cache->lru_tail = e->lru_prev;
}

static void
lru_push_head(int32 s)
{
	CacheSlot  *e = &slots[s];

	e->lru_prev = NO_ENTRY;
	e->lru_next = shared_cache->lru_head;
	if (shared_cache->lru_head != NO_ENTRY)
		slots[shared_cache->lru_head].lru_prev = s;
	shared_cache->lru_head = s;
	if (shared_cache->lru_tail == NO_ENTRY)
		shared_cache->lru_tail = s;
}

/* Drop entry s: its blocks and its slot go back to the free lists. */
static void
drop_slot(int32 s)
{
	CacheSlot  *e = &slots[s];
	int32	   *link = &buckets[e->hash & (shared_cache->nbuckets - 1)];
	int32		b = e->first_block;

	while (*link != s)
		link = &slots[*link].chain_next;
	*link = e->chain_next;
	lru_unlink(s);
	while (b != NO_ENTRY)
	{
		int32		next = block_next[b];

		block_next[b] = shared_cache->free_block;
		shared_cache->free_block = b;
		shared_cache->free_blocks++;
		b = next;
	}
	shared_cache->entries--;
	shared_cache->bytes -= e->len + e->url_len;
	memset(e, 0, sizeof(CacheSlot));
	e->chain_next = shared_cache->free_slot;
	shared_cache->free_slot = s;
}

/* Copy len bytes at offset off of entry s's data into dst. */
static void
read_data(CacheSlot *e, int64 off, char *dst, int64 len)
{
	int32		b = e->first_block;

	while (off >= NIMBLE_CACHE_BLOCK)
	{
		b = block_next[b];
		off -= NIMBLE_CACHE_BLOCK;
	}
	while (len > 0)
	{
		int64		n = Min(len, NIMBLE_CACHE_BLOCK - off);

		memcpy(dst, data + (Size) b * NIMBLE_CACHE_BLOCK + off, n);
		dst += n;
		len -= n;
		off = 0;
		b = block_next[b];
	}
}

/* Does entry s hold the answer to this request? */
static bool
slot_matches(int32 s, uint64 hash, Oid serverid, uint64 key_hash,
			 const char *url, int32 url_len)
{
	CacheSlot  *e = &slots[s];
	char		buf[1024];
	int64		off = 0;

	if (e->hash != hash || e->dbid != MyDatabaseId || e->serverid != serverid ||
		e->key_hash != key_hash || e->url_len != url_len)
		return false;
	while (off < url_len)
	{
		int64		n = Min((int64) sizeof(buf), url_len - off);

		read_data(e, off, buf, n);
		if (memcmp(buf, url + off, n) != 0)
			return false;
		off += n;
	}
	return true;
}

static int32
find_slot(uint64 hash, Oid serverid, uint64 key_hash, const char *url, int32 url_len)
{
	for (int32 s = buckets[hash & (shared_cache->nbuckets - 1)]; s != NO_ENTRY;
		 s = slots[s].chain_next)
	{
		if (slot_matches(s, hash, serverid, key_hash, url, url_len))
			return s;
	}
	return NO_ENTRY;
}

/*
 * The cached body of url (hash: cache.c's), fresh within ttl_s seconds of
 * now, as a malloc'd copy; or NULL.
 */
char *
nimble_shared_cache_lookup(uint64 hash, Oid serverid, uint64 key_hash,
						   const char *url, int ttl_s, TimestampTz now, size_t *len)
{
	int32		url_len = (int32) strlen(url);
	int32		s;
	char	   *copy = NULL;

	LWLockAcquire(cache_lock, LW_EXCLUSIVE);
	s = find_slot(hash, serverid, key_hash, url, url_len);
	if (s != NO_ENTRY)
	{
		CacheSlot  *e = &slots[s];

		if (now - e->sent_at >= (TimestampTz) ttl_s * USECS_PER_SEC)
			drop_slot(s);
		else if ((copy = malloc(e->len + 1)) != NULL)
		{
			read_data(e, url_len, copy, e->len);
			copy[e->len] = '\0';
			*len = (size_t) e->len;
			lru_unlink(s);
			lru_push_head(s);
		}
	}
	LWLockRelease(cache_lock);
	return copy;
}

/* Keep a copy of body as the answer to url, sent at sent_at. */
void
nimble_shared_cache_store(uint64 hash, Oid serverid, uint64 key_hash,
						  const char *url, TimestampTz sent_at,
						  const char *body, size_t len)
{
	int32		url_len = (int32) strlen(url);
	int64		total = (int64) url_len + (int64) len;
	int64		need = (total + NIMBLE_CACHE_BLOCK - 1) / NIMBLE_CACHE_BLOCK;
	int32		s;
	int32		prev = NO_ENTRY;
	int64		off = 0;
	CacheSlot  *e;

	/* a response that does not fit is simply not kept */
	if (need > shared_cache->nblocks || need == 0)
		return;
	LWLockAcquire(cache_lock, LW_EXCLUSIVE);
	s = find_slot(hash, serverid, key_hash, url, url_len);
	if (s != NO_ENTRY)
		drop_slot(s);
	while ((shared_cache->free_blocks < need || shared_cache->free_slot == NO_ENTRY) &&
		   shared_cache->lru_tail != NO_ENTRY)
		drop_slot(shared_cache->lru_tail);

	s = shared_cache->free_slot;
	e = &slots[s];
	shared_cache->free_slot = e->chain_next;
	e->in_use = true;
	e->hash = hash;
	e->dbid = MyDatabaseId;
	e->serverid = serverid;
	e->key_hash = key_hash;
	e->url_len = url_len;
	e->len = (int64) len;
	e->sent_at = sent_at;
	e->nblocks = (int32) need;
	e->first_block = NO_ENTRY;

	/* take need blocks, and fill them: the url, then the body */
	for (int64 i = 0; i < need; i++)
	{
		int32		b = shared_cache->free_block;
		char	   *dst = data + (Size) b * NIMBLE_CACHE_BLOCK;
		int64		room = NIMBLE_CACHE_BLOCK;

		shared_cache->free_block = block_next[b];
		shared_cache->free_blocks--;
		block_next[b] = NO_ENTRY;
		if (prev == NO_ENTRY)
			e->first_block = b;
		else
			block_next[prev] = b;
		prev = b;
		while (room > 0 && off < total)
		{
			int64		n;

			if (off < url_len)
			{
				n = Min(room, url_len - off);
				memcpy(dst, url + off, n);
			}
			else
			{
				n = Min(room, total - off);
				memcpy(dst, body + (off - url_len), n);
			}
			dst += n;
			room -= n;
			off += n;
		}
	}
	e->chain_next = buckets[hash & (shared_cache->nbuckets - 1)];
	buckets[hash & (shared_cache->nbuckets - 1)] = s;
	lru_push_head(s);
	shared_cache->entries++;
	shared_cache->bytes += total;
	LWLockRelease(cache_lock);
}

/* Drop every entry; returns how many there were. */
int64
nimble_shared_cache_clear(void)
{
	int64		dropped;

	LWLockAcquire(cache_lock, LW_EXCLUSIVE);
	dropped = shared_cache->entries;
	while (shared_cache->lru_tail != NO_ENTRY)
		drop_slot(shared_cache->lru_tail);
	LWLockRelease(cache_lock);
	return dropped;
}

/* What the cache holds now. */
void
nimble_shared_cache_usage(int64 *entries, int64 *bytes)
{
	LWLockAcquire(cache_lock, LW_SHARED);
	*entries = shared_cache->entries;
	*bytes = shared_cache->bytes;
	LWLockRelease(cache_lock);
}
