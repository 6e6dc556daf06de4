/*-------------------------------------------------------------------------
 *
 * stats.c
 *		  What scans asked of each server (nimble_stats), the request
 *		  budgets (nimble_rate_limits), the scans in flight (nimble_scans).
 *
 * EXPLAIN ANALYZE tells about one scan; these counters add up every scan
 * of the backend since it started (or since nimble_stats_reset()), per
 * foreign server, so a session can tell a slow API from a slow query, see
 * its 429s and its cache hits.  They are plain backend-local counters: the
 * HTTP code bumps them as things happen, so a scan that fails half-way is
 * counted as far as it got.  With nimble_fdw preloaded, each backend adds
 * them to the cluster's (shared_servers.c) as its scans end, and the view
 * shows the cluster's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "nimble_fdw.h"

PG_FUNCTION_INFO_V1(nimble_stats);
PG_FUNCTION_INFO_V1(nimble_stats_reset);
PG_FUNCTION_INFO_V1(nimble_rate_limits);
PG_FUNCTION_INFO_V1(nimble_scans);

/* the shared slots and a generous number of the backend's own */
#define NIMBLE_MAX_BUDGETS_SHOWN 1024

/*
 * Count n errors of status (0: a failed transfer) in stats' table of
 * statuses, beyond it in other_errors.  Never throws.
 */
void
nimble_stats_add_status(NimbleServerStats *stats, long status, int64 n)
{
	int			i;

	for (i = 0; i < stats->nstatus; i++)
	{
		if (stats->by_status[i].status == status)
		{
			stats->by_status[i].count += n;
			return;
		}
	}
	if (i < NIMBLE_STATS_MAX_STATUS)
	{
		stats->by_status[i].status = status;
		stats->by_status[i].count = n;
		stats->nstatus++;
	}
	else
		stats->other_errors += n;
}

/* A response with an error status, or (status 0) a transfer that failed. */
void
nimble_stats_error(NimbleServerStats *stats, long status)
{
	stats->errors++;
	nimble_stats_add_status(stats, status, 1);
}

/* {"429": 3, "transport": 1}: the errors of a server by HTTP status */
static Datum
errors_jsonb(NimbleServerStats *stats)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < stats->nstatus; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (stats->by_status[i].status == 0)
			appendStringInfo(&buf, "\"transport\": " INT64_FORMAT,
							 stats->by_status[i].count);
		else
			appendStringInfo(&buf, "\"%ld\": " INT64_FORMAT,
							 stats->by_status[i].status,
							 stats->by_status[i].count);
	}
	if (stats->other_errors > 0)
		appendStringInfo(&buf, "%s\"other\": " INT64_FORMAT,
						 stats->nstatus > 0 ? ", " : "", stats->other_errors);
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* One row of nimble_stats: server's counters. */
static void
put_stats_row(ReturnSetInfo *rsinfo, ForeignServer *server, NimbleServerStats *stats)
{
	Datum		values[13];
	bool		nulls[13] = {0};
	int			i = 0;

	values[i++] = CStringGetTextDatum(server->servername);
	values[i++] = Int64GetDatum(stats->requests);
	values[i++] = Int64GetDatum(stats->pages);
	values[i++] = Int64GetDatum(stats->bytes);
	values[i++] = Int64GetDatum(stats->retries);
	values[i++] = Int64GetDatum(stats->cache_hits);
	values[i++] = Int64GetDatum(stats->errors);
	values[i++] = errors_jsonb(stats);
	values[i++] = Float8GetDatum(stats->network_wait_us / 1000.0);
	values[i++] = Float8GetDatum(stats->rate_limit_wait_us / 1000.0);
	values[i++] = Int64GetDatum(stats->connections);
	values[i++] = TimestampTzGetDatum(stats->since);
	values[i++] = Int64GetDatum(stats->scans);
	Assert(i == lengthof(values));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * nimble_stats() returns one row per foreign server of this database that
 * requests were sent to (or answered from the cache): by this backend, or
 * with nimble_fdw preloaded by every backend of the cluster (what this
 * backend counted is added first; other backends add theirs as their
 * scans end).
 */
Datum
nimble_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NimbleServerStateWalk walk;
	NimbleServerState *state;

	InitMaterializedSRF(fcinfo, 0);
	if (nimble_shared_servers_active())
	{
		Oid		   *ids;
		int			n;

		nimble_server_states_begin(&walk);
		while ((state = nimble_server_states_next(&walk)) != NULL)
			nimble_server_state_flush(state);
		n = nimble_shared_stats_servers(&ids);
		for (int k = 0; k < n; k++)
		{
			ForeignServer *server = GetForeignServerExtended(ids[k], FSV_MISSING_OK);
			NimbleServerStats stats;

			/* dropped: its figures went with it */
			if (server && nimble_shared_stats_read(ids[k], &stats))
				put_stats_row(rsinfo, server, &stats);
		}
		PG_RETURN_VOID();
	}
	nimble_server_states_begin(&walk);
	while ((state = nimble_server_states_next(&walk)) != NULL)
	{
		ForeignServer *server = GetForeignServerExtended(state->serverid,
														 FSV_MISSING_OK);

		/* dropped in this transaction: its figures go with it */
		if (server)
			put_stats_row(rsinfo, server, &state->stats);
	}
	PG_RETURN_VOID();
}

/*
 * nimble_stats_reset(): start counting again from zero: this backend's
 * counters, and with nimble_fdw preloaded this database's in the cluster.
 * The entries are zeroed in place: a scan running in the same query still
 * points to them.
 */
Datum
nimble_stats_reset(PG_FUNCTION_ARGS)
{
	NimbleServerStateWalk walk;
	NimbleServerState *state;
	TimestampTz now = GetCurrentTimestamp();

	nimble_server_states_begin(&walk);
	while ((state = nimble_server_states_next(&walk)) != NULL)
	{
		memset(&state->stats, 0, sizeof(NimbleServerStats));
		state->stats.serverid = state->serverid;
		state->stats.since = now;
		state->flushed = state->stats;
	}
	nimble_shared_stats_reset(now);
	PG_RETURN_VOID();
}

/*
 * nimble_rate_limits() returns one row per request budget (an API key on a
 * host) this backend can see: the cluster's shared ones when nimble_fdw is
 * preloaded, and the backend's own.  The key is never shown, nor anything
 * derived from it: two keys on one host are two rows.
 */
Datum
nimble_rate_limits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NimbleBudgetInfo *infos;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	infos = palloc(sizeof(NimbleBudgetInfo) * NIMBLE_MAX_BUDGETS_SHOWN);
	n = nimble_throttle_snapshot(infos, NIMBLE_MAX_BUDGETS_SHOWN);
	for (int k = 0; k < n; k++)
	{
		NimbleBudgetInfo *b = &infos[k];
		Datum		values[10];
		bool		nulls[10] = {0};
		int			i = 0;

		values[i++] = CStringGetTextDatum(b->host);
		values[i++] = BoolGetDatum(b->shared);
		values[i] = Int32GetDatum(b->limit);
		nulls[i++] = b->limit == 0;
		values[i] = Float8GetDatum(b->window_s);
		nulls[i++] = b->limit == 0;
		values[i++] = Int32GetDatum(b->in_window);
		values[i++] = Int32GetDatum(b->in_flight);
		values[i] = TimestampTzGetDatum(b->hold_until);
		nulls[i++] = b->hold_until == 0;
		values[i++] = BoolGetDatum(b->from_api);
		values[i++] = BoolGetDatum(b->answered);
		values[i++] = TimestampTzGetDatum(b->last_used);
		Assert(i == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* What a scan waits for, as nimble_scans says it (NULL: on the CPU). */
static const char *
waiting_text(NimbleScanWait waiting)
{
	switch (waiting)
	{
		case NIMBLE_SCAN_WAIT_API:
			return "api";
		case NIMBLE_SCAN_WAIT_RATE_LIMIT:
			return "rate limit";
		case NIMBLE_SCAN_WAIT_NONE:
			break;
	}
	return NULL;
}

/*
 * nimble_scans() returns one row per scan in flight: every backend's with
 * nimble_fdw preloaded, else the calling backend's.  As in
 * pg_stat_activity, a scan of another role shows only its pid, role and
 * database unless the caller has that role's privileges or
 * pg_read_all_stats.
 */
Datum
nimble_scans(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NimbleScanInfo *infos;
	int			n;
	bool		all_stats = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	InitMaterializedSRF(fcinfo, 0);
	n = nimble_progress_snapshot(&infos);
	for (int k = 0; k < n; k++)
	{
		NimbleScanInfo *scan = &infos[k];
		NimbleScanProgress *f = &scan->figures;
		Datum		values[14];
		bool		nulls[14] = {0};
		char	   *role = GetUserNameFromId(scan->roleid, true);
		char	   *db = get_database_name(scan->dbid);
		const char *waiting = waiting_text(f->waiting);
		int			i = 0;

		values[i++] = Int32GetDatum(scan->pid);
		values[i] = role ? CStringGetTextDatum(role) : (Datum) 0;
		nulls[i++] = role == NULL;
		values[i] = db ? CStringGetTextDatum(db) : (Datum) 0;
		nulls[i++] = db == NULL;
		if (all_stats || has_privs_of_role(GetUserId(), scan->roleid))
		{
			values[i++] = CStringGetTextDatum(scan->server);
			values[i++] = CStringGetTextDatum(scan->resource);
			values[i++] = CStringGetTextDatum(scan->route);
			values[i++] = TimestampTzGetDatum(scan->started_at);
			values[i++] = Int64GetDatum(f->requests_done);
			values[i] = Int64GetDatum(f->requests_expected);
			nulls[i++] = f->requests_expected < 0;
			values[i++] = Int64GetDatum(f->rows);
			values[i++] = Int64GetDatum(f->bytes);
			values[i++] = Int64GetDatum(f->retries);
			values[i] = waiting ? CStringGetTextDatum(waiting) : (Datum) 0;
			nulls[i++] = waiting == NULL;
		}
		else
		{
			for (; i < lengthof(values) - 1; i++)
				nulls[i] = true;
		}
		/* the share of the requests done, for a progress bar */
		if (!nulls[8] && f->requests_expected > 0)
			values[i] = Float8GetDatum(Min(1.0, (double) f->requests_done /
										   f->requests_expected));
		nulls[i] = nulls[8] || f->requests_expected <= 0;
		i++;
		Assert(i == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
