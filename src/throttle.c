/*-------------------------------------------------------------------------
 *
 * throttle.c
 *		  A per-backend request rate limit, one per foreign server.
 *
 * The API limits each key to a number of requests per second (83 on
 * Nimble's default plan), and answers with 429 above it.  Waiting for a
 * 429 and its Retry-After is slow, so requests are spaced out before they
 * leave: each start is at least 1/max_requests_per_second after the one
 * before it on the same server, retries included.  There is no burst
 * allowance, so no window of one second ever holds more starts than the
 * limit allows, even right after an idle period.
 *
 * The state is per backend: several backends sharing a key share the
 * API's limit, which one backend cannot see.  The server option is then
 * the limit divided by the number of concurrent sessions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "nimble_fdw.h"

typedef struct ThrottleEntry
{
	Oid			serverid;		/* hash key */
	TimestampTz next_start;		/* the earliest moment the next may start */
} ThrottleEntry;

static HTAB *throttles = NULL;

/*
 * May a request to serverid start at now, under rate requests a second?
 * Returns 0 and books the slot if so, else the milliseconds to wait before
 * asking again (at least 1).
 */
long
nimble_throttle_acquire(Oid serverid, double rate, TimestampTz now)
{
	ThrottleEntry *entry;
	bool		found;
	int64		interval_us;

	if (rate <= 0)
		return 0;

	if (throttles == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ThrottleEntry);
		ctl.hcxt = TopMemoryContext;
		throttles = hash_create("nimble_fdw rate limits", 8, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(throttles, &serverid, HASH_ENTER, &found);
	if (!found)
		entry->next_start = now;

	if (now < entry->next_start)
		return (long) Max(1, (entry->next_start - now + 999) / 1000);

	/*
	 * Slots are spaced from the previous slot, not from the moment the
	 * waiter woke up, so that the latch's millisecond wake-ups (rounded
	 * up) do not eat into the rate.  Only up to 2 ms of lateness (half an
	 * interval at most) is made up, so a window of one second holds no more
	 * starts than strict spacing would allow in 1.002 s.  The interval is
	 * rounded up.
	 */
	interval_us = (int64) ceil(1000000.0 / rate);
	if (now - entry->next_start <= Min(interval_us / 2, 2000))
		entry->next_start += interval_us;
	else
		entry->next_start = now + interval_us;
	return 0;
}
