/*-------------------------------------------------------------------------
 *
 * throttle.c
 *		  A per-backend request rate limit, one per foreign server.
 *
 * The API limits each key to a number of requests per second (83 on
 * Nimble's default plan), and answers with 429 above it.  Waiting for a
 * 429 and its Retry-After is slow, so requests are spaced out before they
 * leave: each start is at least 1/max_requests_per_second after the one
 * before it on the same server, retries included, plus a margin for jitter
 * (below).  There is no burst allowance, so no window of one second ever
 * holds more requests than the limit allows, even right after an idle
 * period.
 *
 * The state is per backend: several backends sharing a key share the
 * API's limit, which one backend cannot see.  The server option is then
 * the limit divided by the number of concurrent sessions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/timestamp.h"

#include "nimble_fdw.h"

/*
 * The API counts requests as they arrive, not as they start: a request that
 * leaves late (the backend was decoding a page) and the next one on time
 * arrive closer than the spacing.  Spacing for a limit of R per second is
 * therefore (1 s + this) / R, so that R + 1 starts span more than a second
 * by that much: at 83/s, 12.17 ms instead of 12.05 ms, about 1% of the
 * rate.  Without it the mock saw 84 arrivals in a second of a 16-wide scan.
 */
#define NIMBLE_THROTTLE_JITTER_US 10000

/*
 * May a request to serverid start at now, under rate requests a second?
 * Returns 0 and books the slot if so, else the milliseconds to wait before
 * asking again (at least 1).
 */
long
nimble_throttle_acquire(Oid serverid, double rate, TimestampTz now)
{
	NimbleServerState *entry;
	int64		interval_us;

	if (rate <= 0)
		return 0;

	/* the schedule is kept with the server's other state */
	entry = nimble_server_state(serverid);
	if (!entry->throttled)
	{
		entry->next_start = now;
		entry->throttled = true;
	}

	if (now < entry->next_start)
		return (long) Max(1, (entry->next_start - now + 999) / 1000);

	/*
	 * Slots are spaced from the previous slot, not from the moment the
	 * waiter woke up, so that the latch's millisecond wake-ups (rounded
	 * up) do not eat into the rate.  Only up to 2 ms of lateness (half an
	 * interval at most) is made up, which the jitter margin covers.  The
	 * interval is rounded up.
	 */
	interval_us = (int64) ceil((1000000.0 + NIMBLE_THROTTLE_JITTER_US) / rate);
	if (now - entry->next_start <= Min(interval_us / 2, 2000))
		entry->next_start += interval_us;
	else
		entry->next_start = now + interval_us;
	return 0;
}
