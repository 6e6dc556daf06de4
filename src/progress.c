/*-------------------------------------------------------------------------
 *
 * progress.c
 *		  The scans in flight, for the nimble_scans view.
 *
 * Each scan takes a slot when it starts and gives it back when its memory
 * goes (a reset callback: on success, error and cancel alike), and writes
 * its figures there as requests finish and rows are read: requests done
 * and expected, rows, bytes, retries, and what it waits for.
 *
 * With nimble_fdw in shared_preload_libraries the slots are in shared
 * memory (shmem.c), NIMBLE_SCANS_PER_BACKEND for each PGPROC, so every
 * backend sees every backend's scans; without it each backend has only
 * its own.  A slot is written by its backend alone, with the change count
 * protocol of pg_stat_activity's entries (odd while a write is under way;
 * readers copy until they see the same even count before and after), so
 * neither side takes a lock or can be held up by the other.  A backend
 * that dies leaves its slots marked in use until its PGPROC is taken
 * again: a reader skips slots whose pid is not a live backend's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"
#include "compat.h"

/* scans one backend runs at once that the view can show */
#define NIMBLE_SCANS_PER_BACKEND 4

typedef struct NimbleScanSlot
{
	uint32		changecount;	/* odd while its backend writes it */
	bool		in_use;
	NimbleScanInfo scan;
} NimbleScanSlot;

/* the shared slots (shmem.c), or NULL; then the backend's own */
static NimbleScanSlot *shared_slots = NULL;
static int	nshared_slots = 0;
static NimbleScanSlot local_slots[NIMBLE_SCANS_PER_BACKEND];

/* The slots for PGPROCs: regular and auxiliary processes, prepared xacts. */
static int
total_procs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/*
 * Size of the shared slots, for shmem.c (MaxBackends is known by the time
 * shmem_request_hook runs).
 */
Size
nimble_progress_shmem_size(void)
{
	return mul_size(mul_size(total_procs(), NIMBLE_SCANS_PER_BACKEND),
					sizeof(NimbleScanSlot));
}

/* Take the shared slots at area (shmem.c); init: the area is new. */
void
nimble_progress_shmem_attach(void *area, bool init)
{
	shared_slots = (NimbleScanSlot *) area;
	nshared_slots = total_procs() * NIMBLE_SCANS_PER_BACKEND;
	if (init)
		memset(area, 0, nimble_progress_shmem_size());
}

/* This backend's slots: NIMBLE_SCANS_PER_BACKEND of them. */
static NimbleScanSlot *
my_slots(void)
{
	int			procno;

	if (shared_slots == NULL || MyProc == NULL)
		return local_slots;
	procno = nimble_my_proc_number();
	if (procno < 0 || (procno + 1) * NIMBLE_SCANS_PER_BACKEND > nshared_slots)
		return local_slots;
	return &shared_slots[procno * NIMBLE_SCANS_PER_BACKEND];
}

static inline void
begin_write(NimbleScanSlot *slot)
{
	slot->changecount++;
	pg_write_barrier();
}

static inline void
end_write(NimbleScanSlot *slot)
{
	pg_write_barrier();
	slot->changecount++;
}

/* At backend exit: no slot stays taken, however the scans ended. */
static void
free_slots_at_exit(int code, Datum arg)
{
	NimbleScanSlot *slots = my_slots();

	for (int i = 0; i < NIMBLE_SCANS_PER_BACKEND; i++)
	{
		if (slots[i].in_use && slots[i].scan.pid == MyProcPid)
			nimble_progress_end(i);
	}
}

/*
 * Publish a scan of resource on server along route (text for the view) by
 * the current role: the slot's number, or -1 when all of the backend's
 * slots are taken (the scan then runs unseen).
 */
int
nimble_progress_begin(const char *server, const char *resource,
					  const char *route)
{
	static bool exit_callback_set = false;
	NimbleScanSlot *slots = my_slots();

	if (!exit_callback_set)
	{
		before_shmem_exit(free_slots_at_exit, (Datum) 0);
		exit_callback_set = true;
	}
	for (int i = 0; i < NIMBLE_SCANS_PER_BACKEND; i++)
	{
		NimbleScanSlot *slot = &slots[i];

		/* a slot left by a backend that died in this PGPROC is ours now */
		if (slot->in_use && slot->scan.pid == MyProcPid)
			continue;
		begin_write(slot);
		slot->in_use = true;
		slot->scan.pid = MyProcPid;
		slot->scan.roleid = GetUserId();
		slot->scan.dbid = MyDatabaseId;
		strlcpy(slot->scan.server, server, sizeof(slot->scan.server));
		strlcpy(slot->scan.resource, resource, sizeof(slot->scan.resource));
		strlcpy(slot->scan.route, route, sizeof(slot->scan.route));
		slot->scan.started_at = GetCurrentTimestamp();
		memset(&slot->scan.figures, 0, sizeof(slot->scan.figures));
		slot->scan.figures.requests_expected = -1;
		end_write(slot);
		return i;
	}
	return -1;
}

/* Write a scan's figures into its slot h.  Never throws. */
void
nimble_progress_update(int h, const NimbleScanProgress *figures)
{
	NimbleScanSlot *slot;

	if (h < 0)
		return;
	slot = &my_slots()[h];
	begin_write(slot);
	slot->scan.figures = *figures;
	end_write(slot);
}

/*
 * What scan h waits for now, and its requests so far (stats: its
 * counters), for a scan that waits before it has rows to count.  Never
 * throws.
 */
void
nimble_progress_waiting(int h, NimbleScanWait waiting, const NimbleScanStats *stats)
{
	NimbleScanSlot *slot;

	if (h < 0)
		return;
	slot = &my_slots()[h];
	begin_write(slot);
	slot->scan.figures.waiting = waiting;
	slot->scan.figures.requests_done = stats->requests;
	slot->scan.figures.bytes = stats->bytes;
	slot->scan.figures.retries = stats->retries;
	end_write(slot);
}

/* Give slot h back.  Never throws (reset callbacks call it). */
void
nimble_progress_end(int h)
{
	NimbleScanSlot *slot;

	if (h < 0)
		return;
	slot = &my_slots()[h];
	begin_write(slot);
	slot->in_use = false;
	end_write(slot);
}

/* A consistent copy of slot into copy; false if it is not in use. */
static bool
read_slot(volatile NimbleScanSlot *slot, NimbleScanSlot *copy)
{
	for (;;)
	{
		uint32		before = slot->changecount;
		uint32		after;

		pg_read_barrier();
		memcpy(copy, (const void *) slot, sizeof(NimbleScanSlot));
		pg_read_barrier();
		after = slot->changecount;
		if (before == after && (before & 1) == 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return copy->in_use;
}

/*
 * The scans in flight that this backend can see (every backend's with the
 * preload, else its own), into *out (palloc'd); returns how many.  A slot
 * of a backend that is gone is skipped.
 */
int
nimble_progress_snapshot(NimbleScanInfo **out)
{
	int			n = 0;
	int			nslots = shared_slots ? nshared_slots : NIMBLE_SCANS_PER_BACKEND;
	NimbleScanSlot *slots = shared_slots ? shared_slots : local_slots;
	NimbleScanInfo *infos = palloc(sizeof(NimbleScanInfo) * nslots);

	for (int i = 0; i < nslots; i++)
	{
		NimbleScanSlot copy;

		if (!read_slot(&slots[i], &copy))
			continue;
		if (copy.scan.pid != MyProcPid && BackendPidGetProc(copy.scan.pid) == NULL)
			continue;			/* left by a backend that died */
		infos[n++] = copy.scan;
	}
	*out = infos;
	return n;
}
