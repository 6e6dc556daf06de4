/*-------------------------------------------------------------------------
 *
 * throttle.c
 *		  The request budget of an API key on a host: the API's own limit,
 *		  what its headers say, and max_requests_per_second.
 *
 * An API limits each key to a number of requests in a window of time
 * (Nimble documents 5,000 a minute) and answers 429 above it.  A 429 costs
 * a round trip and a Retry-After, so requests are held back before they
 * leave, by three rules, all of which a start must pass:
 *
 * 1. The window: at most limit starts in any window_us.  The limit starts
 *	  as the API description's documented one and follows the API's
 *	  ratelimit-policy header ("200;w=5"), or a lower ratelimit-limit.  A
 *	  window, unlike a token bucket, is safe against an API that counts a
 *	  sliding window (a full bucket plus a window's refill would send twice
 *	  the limit in one window), and lets a query of a few hundred requests
 *	  through at full speed.
 * 2. The hold: nothing starts before hold_until, which a 429 (its
 *	  Retry-After, or the back-off chosen for it) or a ratelimit-remaining
 *	  of zero (until its ratelimit-reset) sets.  A 429 is about the key,
 *	  not about one request: every request of the key waits.
 * 3. The spacing: each start at least (1 s + 10 ms) / max_requests_per_second
 *	  after the one before it (the server option, when set).  Set to 0, it
 *	  turns rule 1's documented window off (a proxy, a mock, a plan above
 *	  the documented limit that the API does not announce); what the API
 *	  says, in a policy or a 429, still holds.
 *
 * The API's ratelimit-remaining also tells of requests made with the key
 * elsewhere (other backends, other machines): when it leaves fewer than the
 * window would, the difference is booked in the window as if just sent.
 * The figure is taken as it is, not less the requests in flight: an answer
 * tells the API's count when its request arrived, which includes some of
 * those and not others (a request started later can arrive earlier), and
 * taking them all off made a window of 200 send 150 in a soak of four
 * backends.  What is booked is then surely other clients' use, and other
 * clients' requests in flight are seen one answer late.
 * The API's figures only ever hold requests back, never let more through
 * than the window allows, since a response that arrives late tells of an
 * older state.
 *
 * Until the key's first answer from the host, one request at a time: the
 * answer's headers then tell the limit before a burst is sent.
 *
 * A budget is per API key and host (its id hashes both), not per server:
 * two servers with one key share it.  With nimble_fdw in
 * shared_preload_libraries the budgets are in shared memory (shmem.c) and
 * every backend of the cluster spends from the same one; a backend's
 * requests in flight are given back when it exits, however it exits.
 * Without the preload each backend has its own, and backends sharing a key
 * see each other only through the API's headers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

/*
 * The window is counted in slots: a start is booked in the slot of its
 * time, and a slot leaves the window when it is NIMBLE_WINDOW_SLOTS slots
 * old.  The oldest slot counts whole, so the window held to is at least
 * window_us long, and at most one slot longer: a slot's worth of budget
 * (1/60) is the price of a fixed-size state.
 */
#define NIMBLE_WINDOW_SLOTS 60

/*
 * The API counts requests as they arrive, not as they start: a request
 * that leaves on a new connection arrives later than one that leaves on an
 * open one, and a busy API reads some late.  Windows are lengthened by
 * WINDOW_MARGIN (and 2% of the window) so that starts a window apart also
 * arrive at least a window apart: with 50 ms, 16 backends on 2 cores saw
 * the mock refuse 4 of 480 requests, whose arrivals it had read over 90 ms
 * late; with 150 ms, 16 backends opening their connections at once left
 * up to 120 ms after their booking and were read up to 260 ms late.  The spacing of rule 3 is (1 s + JITTER) / rate (at 83/s 12.17
 * ms instead of 12.05 ms: without it the mock saw 84 arrivals in a second
 * of a 16-wide scan).
 */
#define NIMBLE_THROTTLE_JITTER_US 10000
#define NIMBLE_WINDOW_MARGIN_US 250000

/* A ratelimit-reset above this is a time (seconds since 1970), not a delay */
#define NIMBLE_RESET_IS_EPOCH 31536000.0
#define UNIX_TO_POSTGRES_SECS \
	((double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

typedef struct NimbleBudget
{
	uint64		id;				/* hash key: nimble_budget_id() */

	/* rule 1: the window */
	int32		limit;			/* starts in a window; 0: no window */
	int64		window_us;		/* as the API states it */
	int64		slot_us;		/* the slots' width, margin included */
	int64		newest_slot;	/* absolute number of the newest slot */
	int32		in_window;		/* the sum of counts */
	int32		counts[NIMBLE_WINDOW_SLOTS + 1];	/* a ring */
	bool		from_api;		/* the limit is what the API said */

	/* rule 2: the hold */
	TimestampTz hold_until;

	/* rule 3: the spacing */
	TimestampTz next_start;
	bool		spaced;			/* next_start is set */

	int32		in_flight;		/* started, not yet answered */
	bool		answered;		/* the host has answered the key once */
	TimestampTz last_used;		/* for reuse of the shared slots */
	char		host[NIMBLE_BUDGET_HOST_LEN];	/* scheme://host:port */
} NimbleBudget;

/*
 * How many budgets (API key and host pairs) shared memory holds.  A slot
 * with nothing in flight is reused for a new pair, the least recently used
 * first; should all be busy, the new pair's budget is the backend's own.
 */
#define NIMBLE_SHARED_BUDGETS 64

/* the backend's own budgets: without the preload, or beyond the slots */
static HTAB *budgets = NULL;

/* the shared ones (shmem.c), or NULL */
static NimbleBudget *shared_budgets = NULL;

/*
 * This backend's requests in flight in shared budgets, given back by
 * give_back_at_exit: a backend that dies in the middle of a request (an
 * error, pg_terminate_backend) must not leave them counted.
 */
typedef struct MyInFlight
{
	uint64		id;
	int32		n;
} MyInFlight;
static MyInFlight my_in_flight[NIMBLE_SHARED_BUDGETS];
static bool exit_callback_set = false;

/* The length of url's scheme, host and port. */
static size_t
host_length(const char *url)
{
	const char *host = strstr(url, "://");

	host = host ? host + 3 : url;
	return (host - url) + strcspn(host, "/?#");
}

/*
 * The id of the budget of the key whose hash is key_hash on url's host:
 * a hash of the key's hash and the url's scheme, host and port.
 */
uint64
nimble_budget_id(const char *url, uint64 key_hash)
{
	return hash_bytes_extended((const unsigned char *) url, host_length(url),
							   key_hash);
}

/* Set the window to limit starts in window_us, keeping what it holds. */
static void
set_window(NimbleBudget *b, int32 limit, int64 window_us, TimestampTz now)
{
	int32		held = b->in_window;

	memset(b->counts, 0, sizeof(b->counts));
	b->limit = limit;
	b->window_us = window_us;
	b->slot_us = Max(1, (window_us + window_us / 50 + NIMBLE_WINDOW_MARGIN_US +
						 NIMBLE_WINDOW_SLOTS - 1) / NIMBLE_WINDOW_SLOTS);
	b->newest_slot = now / b->slot_us;
	/* what the old window held leaves the new one a window from now */
	b->in_window = held;
	b->counts[b->newest_slot % (NIMBLE_WINDOW_SLOTS + 1)] = held;
}

/* Move the window to now: slots too old to count are emptied. */
static void
advance(NimbleBudget *b, TimestampTz now)
{
	int64		slot;
	int64		steps;

	if (b->limit <= 0)
		return;
	slot = now / b->slot_us;
	if (slot <= b->newest_slot)
		return;					/* (a clock that went back stays put) */
	steps = Min(slot - b->newest_slot, NIMBLE_WINDOW_SLOTS + 1);
	for (int64 i = 1; i <= steps; i++)
	{
		int			idx = (int) ((b->newest_slot + i) % (NIMBLE_WINDOW_SLOTS + 1));

		b->in_window -= b->counts[idx];
		b->counts[idx] = 0;
	}
	b->newest_slot = slot;
}

/* When the oldest start the window holds leaves it. */
static TimestampTz
window_frees_at(NimbleBudget *b)
{
	for (int64 s = b->newest_slot - NIMBLE_WINDOW_SLOTS; s <= b->newest_slot; s++)
	{
		if (s >= 0 && b->counts[s % (NIMBLE_WINDOW_SLOTS + 1)] > 0)
			return (s + NIMBLE_WINDOW_SLOTS + 1) * b->slot_us;
	}
	return (b->newest_slot + 1) * b->slot_us;
}

/*
 * A budget for url's host that starts as api documents it (api NULL: no
 * window).
 */
static void
budget_start(NimbleBudget *b, uint64 id, const char *url,
			 const NimbleApiDef *api, TimestampTz now)
{
	memset(b, 0, sizeof(NimbleBudget));
	b->id = id;
	if (url)
		strlcpy(b->host, url, Min(host_length(url) + 1, sizeof(b->host)));
	if (api && api->rate_limit.requests > 0)
		set_window(b, api->rate_limit.requests,
				   (int64) (api->rate_limit.window_s * USECS_PER_SEC), now);
}

/* The shared budget of id, or a slot for it when create; lock held. */
static NimbleBudget *
shared_budget(uint64 id, const char *url, const NimbleApiDef *api,
			  TimestampTz now, bool create)
{
	NimbleBudget *reuse = NULL;

	for (int i = 0; i < NIMBLE_SHARED_BUDGETS; i++)
	{
		NimbleBudget *b = &shared_budgets[i];

		if (b->id == id && b->last_used != 0)
			return b;
		if (b->in_flight == 0 && (reuse == NULL || b->last_used < reuse->last_used))
			reuse = b;
	}
	if (!create || reuse == NULL)
		return NULL;
	budget_start(reuse, id, url, api, now);
	reuse->last_used = now;
	return reuse;
}

/*
 * The budget of id, made (as api documents it) when create; NULL if it is
 * not there.  The shared area's lock is held (*lock) until budget_close,
 * so nothing between them may throw.  A new budget of the backend's own
 * may throw (out of memory) before anything is held.
 */
static NimbleBudget *
budget_open(uint64 id, const char *url, const NimbleApiDef *api,
			TimestampTz now, bool create, LWLock **lock)
{
	NimbleBudget *b;
	bool		found;

	*lock = NULL;
	if (shared_budgets)
	{
		*lock = nimble_shmem_lock();
		b = shared_budget(id, url, api, now, create);
		if (b)
			return b;
		nimble_shmem_unlock(*lock);
		*lock = NULL;
	}
	if (budgets == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(NimbleBudget);
		ctl.hcxt = TopMemoryContext;
		budgets = hash_create("nimble_fdw request budgets", 8, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	b = hash_search(budgets, &id, create ? HASH_ENTER : HASH_FIND, &found);
	if (b && create && !found)
		budget_start(b, id, url, api, now);
	return b;
}

static void
budget_close(LWLock *lock)
{
	nimble_shmem_unlock(lock);
}

/* Give back what this backend has in flight in shared budgets. */
static void
give_back_at_exit(int code, Datum arg)
{
	LWLock	   *lock = nimble_shmem_lock();

	for (int i = 0; i < NIMBLE_SHARED_BUDGETS; i++)
	{
		NimbleBudget *b;

		if (my_in_flight[i].n == 0)
			continue;
		b = shared_budget(my_in_flight[i].id, NULL, NULL, 0, false);
		if (b)
			b->in_flight = Max(0, b->in_flight - my_in_flight[i].n);
		my_in_flight[i].n = 0;
	}
	nimble_shmem_unlock(lock);
}

/* Count (delta +1 or -1) a request of this backend in flight in shared b. */
static void
note_my_in_flight(NimbleBudget *b, LWLock *lock, int delta)
{
	MyInFlight *free_slot = NULL;

	if (lock == NULL)
		return;					/* the backend's own budget */
	for (int i = 0; i < NIMBLE_SHARED_BUDGETS; i++)
	{
		if (my_in_flight[i].id == b->id && my_in_flight[i].n > 0)
		{
			my_in_flight[i].n += delta;
			return;
		}
		if (free_slot == NULL && my_in_flight[i].n == 0)
			free_slot = &my_in_flight[i];
	}
	if (delta > 0 && free_slot)
	{
		free_slot->id = b->id;
		free_slot->n = delta;
	}
}

/*
 * Size of the shared budgets, for shmem.c.
 */
Size
nimble_throttle_shmem_size(void)
{
	return mul_size(NIMBLE_SHARED_BUDGETS, sizeof(NimbleBudget));
}

/*
 * Take the shared budgets at area (shmem.c, under its lock at server
 * start); init: the area is new.
 */
void
nimble_throttle_shmem_attach(void *area, bool init)
{
	shared_budgets = (NimbleBudget *) area;
	if (init)
		memset(area, 0, nimble_throttle_shmem_size());
}

static long
ms_until(TimestampTz when, TimestampTz now)
{
	return (long) Max(1, (when - now + 999) / 1000);
}

/* A non-negative integer header value, or -1. */
static double
header_number(const char *value)
{
	char	   *end;
	double		v;

	if (value == NULL || value[0] == '\0')
		return -1;
	errno = 0;
	v = strtod(value, &end);
	while (*end == ' ' || *end == '\t')
		end++;
	if (end == value || *end != '\0' || errno != 0 || !(v >= 0) || isinf(v))
		return -1;
	return v;
}

/*
 * The first policy of a ratelimit-policy value: its quota and window.
 * Both spellings of the drafts: "100;w=60" and "name";q=100;w=60.  Only
 * the first of a list of policies is read (the shortest window, by the
 * drafts' convention).
 */
static bool
parse_policy(const char *value, double *quota, double *window_s)
{
	char		buf[NIMBLE_RATE_HEADER_LEN];
	char	   *tok;
	char	   *save;

	strlcpy(buf, value, sizeof(buf));
	buf[strcspn(buf, ",")] = '\0';
	*quota = -1;
	*window_s = -1;
	for (tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save))
	{
		while (*tok == ' ' || *tok == '\t')
			tok++;
		if (strncmp(tok, "q=", 2) == 0)
			*quota = header_number(tok + 2);
		else if (strncmp(tok, "w=", 2) == 0)
			*window_s = header_number(tok + 2);
		else if (*quota < 0 && tok[0] >= '0' && tok[0] <= '9')
			*quota = header_number(tok);
	}
	return *quota >= 1 && *quota <= PG_INT32_MAX &&
		*window_s > 0 && *window_s <= 86400 * 31;
}

/*
 * May a request of budget id (of url's host) start at now?  api gives the
 * documented limit, rate the server's max_requests_per_second (-1: not set;
 * 0: no limit of ours, not even the documented window, only what the API
 * said; else the spacing too).  Returns 0
 * and books the start if so (the request is then in flight until
 * nimble_throttle_done), else the milliseconds to wait before asking again
 * (at least 1); *held_until then says how long the API's hold lasts (0:
 * no hold, only the window, the first answer or the spacing).
 */
long
nimble_throttle_acquire(uint64 id, const char *url, const NimbleApiDef *api,
						double rate, TimestampTz now, TimestampTz *held_until)
{
	NimbleBudget *b;
	LWLock	   *lock;
	long		wait_ms = 0;

	if (nimble_shmem_active() && !exit_callback_set)
	{
		before_shmem_exit(give_back_at_exit, (Datum) 0);
		exit_callback_set = true;
	}

	*held_until = 0;
	b = budget_open(id, url, api, now, true, &lock);
	b->last_used = now;
	advance(b, now);
	if (now < b->hold_until)
	{
		*held_until = b->hold_until;
		wait_ms = ms_until(b->hold_until, now);
	}
	else if (!b->answered && b->in_flight > 0)
		wait_ms = 5;			/* the first answer is not in yet: poll */
	else if (b->limit > 0 && b->in_window >= b->limit && (b->from_api || rate != 0))
		wait_ms = ms_until(window_frees_at(b), now);
	else if (rate > 0)
	{
		int64		interval_us;

		if (!b->spaced)
		{
			b->next_start = now;
			b->spaced = true;
		}
		if (now < b->next_start)
			wait_ms = ms_until(b->next_start, now);
		else
		{
			/*
			 * Slots are spaced from the previous slot, not from the moment
			 * the waiter woke up, so that the latch's millisecond wake-ups
			 * (rounded up) do not eat into the rate.  Only up to 2 ms of
			 * lateness (half an interval at most) is made up, which the
			 * jitter margin covers.
			 */
			interval_us = (int64) ceil((1000000.0 + NIMBLE_THROTTLE_JITTER_US) / rate);
			if (now - b->next_start <= Min(interval_us / 2, 2000))
				b->next_start += interval_us;
			else
				b->next_start = now + interval_us;
		}
	}

	if (wait_ms == 0)
	{
		if (b->limit > 0)
		{
			b->counts[b->newest_slot % (NIMBLE_WINDOW_SLOTS + 1)]++;
			b->in_window++;
		}
		b->in_flight++;
		note_my_in_flight(b, lock, 1);
	}
	budget_close(lock);
	return wait_ms;
}

/*
 * A request that nimble_throttle_acquire let start is no longer in flight.
 * Never throws (reset callbacks call it).
 */
void
nimble_throttle_done(uint64 id)
{
	LWLock	   *lock;
	NimbleBudget *b = budget_open(id, NULL, NULL, 0, false, &lock);

	if (b && b->in_flight > 0)
	{
		b->in_flight--;
		note_my_in_flight(b, lock, -1);
	}
	budget_close(lock);
}

/*
 * Hold every request of budget id back until until (a 429's wish).  Never
 * throws: the budget exists since one of its requests got the 429.
 */
void
nimble_throttle_hold(uint64 id, TimestampTz until)
{
	LWLock	   *lock;
	NimbleBudget *b = budget_open(id, NULL, NULL, 0, false, &lock);

	if (b)
		b->hold_until = Max(b->hold_until, until);
	budget_close(lock);
}

/*
 * What a response of budget id said about the key's limit (the ratelimit-*
 * headers; empty strings for those it did not send), at now; answered:
 * it was an HTTP answer (not a failed transfer).  Never throws (it runs
 * among curl's completions).
 */
void
nimble_throttle_observe(uint64 id, const NimbleRateHeaders *h, bool answered,
						TimestampTz now)
{
	NimbleBudget *b;
	LWLock	   *lock;
	double		quota = -1;
	double		window_s = -1;
	bool		policy;
	double		limit = header_number(h->limit);
	double		remaining = header_number(h->remaining);
	double		reset = header_number(h->reset);
	TimestampTz reset_at = 0;

	/* all that can be worked out before the lock, is */
	policy = h->policy[0] && parse_policy(h->policy, &quota, &window_s);
	if (reset > 0)
	{
		if (reset >= NIMBLE_RESET_IS_EPOCH)
			reset_at = (TimestampTz) ((reset - UNIX_TO_POSTGRES_SECS) * USECS_PER_SEC);
		else
			reset_at = now + (TimestampTz) (reset * USECS_PER_SEC);
		/* (a reset more than a day away is not believed) */
		if (reset_at <= now || reset_at - now > USECS_PER_DAY)
			reset_at = 0;
	}

	b = budget_open(id, NULL, NULL, now, false, &lock);
	if (b == NULL)
	{
		budget_close(lock);
		return;
	}
	b->answered |= answered;
	advance(b, now);

	/* the API's own statement of its window, or a lower limit than ours */
	if (policy)
	{
		int64		window_us = (int64) (window_s * USECS_PER_SEC);

		if (b->limit != (int32) quota || b->window_us != window_us)
			set_window(b, (int32) quota, window_us, now);
		b->from_api = true;
	}
	else if (limit >= 1 && b->limit > 0 && limit < b->limit)
	{
		set_window(b, (int32) limit, b->window_us, now);
		b->from_api = true;
	}

	if (remaining >= 0)
	{
		if (b->limit > 0 && b->limit - b->in_window > remaining)
		{
			int32		used = b->limit - b->in_window - (int32) Max(remaining, 0);
			int64		slot = b->newest_slot;

			/*
			 * What the API counts leaves its window at its reset: booked in
			 * the slot that leaves ours then (at the latest a window from
			 * now), not in the newest, or a "0 left, back in 4 s" under a
			 * window of a minute would hold everything for a minute.
			 */
			if (reset_at > 0)
				slot = Max(slot - NIMBLE_WINDOW_SLOTS,
						   Min(slot, (reset_at + b->slot_us - 1) / b->slot_us -
							   NIMBLE_WINDOW_SLOTS - 1));
			b->counts[slot % (NIMBLE_WINDOW_SLOTS + 1)] += used;
			b->in_window += used;
		}
		if (remaining <= 0 && reset_at > 0)
		{
			TimestampTz until = reset_at;

			/*
			 * A reset in whole seconds rounds up what a window the API
			 * stated tells to the slot: trust the window within that second.
			 */
			if (b->from_api && b->limit > 0 && b->in_window >= b->limit)
			{
				TimestampTz frees = window_frees_at(b);

				if (frees < reset_at && frees > reset_at - USECS_PER_SEC)
					until = frees;
			}
			b->hold_until = Max(b->hold_until, until);
		}
	}
	budget_close(lock);
}

/* What b holds now, into info. */
static void
describe(NimbleBudget *b, bool shared, TimestampTz now, NimbleBudgetInfo *info)
{
	advance(b, now);
	strlcpy(info->host, b->host, sizeof(info->host));
	info->shared = shared;
	info->limit = b->limit;
	info->window_s = b->window_us / (double) USECS_PER_SEC;
	info->in_window = b->in_window;
	info->in_flight = b->in_flight;
	info->hold_until = b->hold_until > now ? b->hold_until : 0;
	info->from_api = b->from_api;
	info->answered = b->answered;
	info->last_used = b->last_used;
}

/*
 * The budgets this backend can see (the shared ones, then its own), at
 * most max of them, into out; returns how many.  For nimble_rate_limits.
 */
int
nimble_throttle_snapshot(NimbleBudgetInfo *out, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	LWLock	   *lock = nimble_shmem_lock();
	int			n = 0;

	if (lock)
	{
		for (int i = 0; i < NIMBLE_SHARED_BUDGETS && n < max; i++)
		{
			if (shared_budgets[i].last_used != 0)
				describe(&shared_budgets[i], true, now, &out[n++]);
		}
		nimble_shmem_unlock(lock);
	}
	if (budgets)
	{
		HASH_SEQ_STATUS seq;
		NimbleBudget *b;

		hash_seq_init(&seq, budgets);
		while ((b = hash_seq_search(&seq)) != NULL)
		{
			if (n < max)
				describe(b, false, now, &out[n++]);
		}
	}
	return n;
}
