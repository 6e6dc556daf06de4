/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		  Shared memory, when nimble_fdw is in shared_preload_libraries.
 *
 * What backends share (the request budgets of throttle.c, the scans in
 * flight of progress.c, the servers' counters and learned figures of
 * shared_servers.c, the response cache of shared_cache.c) lives in
 * one fixed-size area, sized and made at server start through the
 * shmem_request and shmem_startup hooks, with two LWLocks of our own
 * tranche (one for the cache, whose copies are the longest, one for the
 * rest).  Each user of the area gets its part by size and attaches to
 * it at startup; the lock is held only for a few instructions, never over
 * anything that can throw or wait.
 *
 * Without the preload nothing here runs: nimble_shmem_lock() returns NULL
 * and every user keeps its state in the backend, as before.  Loading the
 * library later (CREATE EXTENSION, or the first query) cannot get shared
 * memory, so correctness never depends on the preload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "nimble_fdw.h"

#define NIMBLE_SHMEM_NAME "nimble_fdw"

typedef struct NimbleSharedArea
{
	LWLock	   *lock;			/* guards everything below but the cache */
	LWLock	   *cache_lock;		/* guards the response cache */
	/* then each user's part, MAXALIGNed, in the order of shared_size() */
} NimbleSharedArea;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static NimbleSharedArea *shared_area = NULL;

static Size
shared_size(void)
{
	Size		size = MAXALIGN(sizeof(NimbleSharedArea));

	size = add_size(size, MAXALIGN(nimble_throttle_shmem_size()));
	size = add_size(size, MAXALIGN(nimble_progress_shmem_size()));
	size = add_size(size, MAXALIGN(nimble_shared_servers_size()));
	return add_size(size, nimble_shared_cache_size(nimble_cache_size_bytes()));
}

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche(NIMBLE_SHMEM_NAME, 2);
}

/* At server start (and in each EXEC_BACKEND child): make or find the area. */
static void
shmem_startup(void)
{
	bool		found;
	char	   *part;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_area = ShmemInitStruct(NIMBLE_SHMEM_NAME, shared_size(), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche(NIMBLE_SHMEM_NAME);

		shared_area->lock = &locks[0].lock;
		shared_area->cache_lock = &locks[1].lock;
	}
	part = (char *) shared_area + MAXALIGN(sizeof(NimbleSharedArea));
	nimble_throttle_shmem_attach(part, !found);
	part += MAXALIGN(nimble_throttle_shmem_size());
	nimble_progress_shmem_attach(part, !found);
	part += MAXALIGN(nimble_progress_shmem_size());
	nimble_shared_servers_attach(part, !found);
	part += MAXALIGN(nimble_shared_servers_size());
	nimble_shared_cache_attach(part, nimble_cache_size_bytes(),
							   shared_area->cache_lock, !found);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Ask for shared memory, if the library is being preloaded.  Called from
 * _PG_init.
 */
void
nimble_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/*
 * The lock of the shared area, taken exclusively; NULL (and nothing taken)
 * when there is no shared area.  Release it with nimble_shmem_unlock.
 */
LWLock *
nimble_shmem_lock(void)
{
	if (shared_area == NULL)
		return NULL;
	LWLockAcquire(shared_area->lock, LW_EXCLUSIVE);
	return shared_area->lock;
}

/* Release what nimble_shmem_lock took (NULL: nothing). */
void
nimble_shmem_unlock(LWLock *lock)
{
	if (lock)
		LWLockRelease(lock);
}

/* Is there a shared area (nimble_fdw in shared_preload_libraries)? */
bool
nimble_shmem_active(void)
{
	return shared_area != NULL;
}
