/*-------------------------------------------------------------------------
 *
 * wait.c
 *		  nimble_wait_batch(): block until a batch completes, or time out.
 *
 * A script that submits a batch and then reads its results needs to wait
 * for it.  This function polls the batch's progress through the same scan
 * code as the batch_progress table (so the same retries, rate limit, error
 * handling and cancel), with a backoff from 1 s doubling to 30 s, and
 * sleeps on the latch between polls so that a cancel or statement_timeout
 * ends the wait at once.  The cache is bypassed: an answer from memory
 * would only make the wait longer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "nimble_fdw.h"

PG_FUNCTION_INFO_V1(nimble_wait_batch);

#define WAIT_FIRST_DELAY_MS 1000
#define WAIT_MAX_DELAY_MS 30000

/* The one server of this wrapper, when the caller named none. */
static ForeignServer *
only_nimble_server(void)
{
	ForeignDataWrapper *fdw = GetForeignDataWrapperByName("nimble_fdw", true);
	List	   *names = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	if (fdw == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("foreign-data wrapper \"nimble_fdw\" does not exist")));
	rel = table_open(ForeignServerRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_foreign_server srv = (Form_pg_foreign_server) GETSTRUCT(tuple);

		if (srv->srvfdw == fdw->fdwid)
			names = lappend(names, pstrdup(NameStr(srv->srvname)));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	if (list_length(names) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nimble_wait_batch needs a server name: there are %d nimble_fdw servers",
						list_length(names)),
				 errhint("Pass the server as the third argument: nimble_wait_batch(batch_id, timeout, 'server').")));
	return GetForeignServerByName(linitial(names), false);
}

static int64
interval_to_usecs(Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/*
 * nimble_wait_batch(batch_id text, timeout interval, server name DEFAULT NULL)
 * RETURNS nimble_batch_progress
 */
/* The index of the column named name in tupdesc, or -1. */
static int
column_index(TupleDesc tupdesc, const char *name)
{
	for (int i = 0; i < tupdesc->natts; i++)
	{
		if (strcmp(NameStr(TupleDescAttr(tupdesc, i)->attname), name) == 0)
			return i;
	}
	return -1;
}

/*
 * nimble_wait_batch(batch_id, timeout [, server]): poll what the server's
 * API says to poll until the batch is done, and return its row; 55000
 * past the timeout, 42704 for a batch the API does not know.
 */
Datum
nimble_wait_batch(PG_FUNCTION_ARGS)
{
	char	   *batch_id;
	int64		timeout_us;
	ForeignServer *server;
	NimbleServerOptions sopts;
	NimbleTableOptions topts;
	const NimbleWaitDef *wait;
	TupleDesc	tupdesc;
	List	   *attrs = NIL;
	int			done_att = -1;
	int			progress_att = -1;
	Oid			progress_out = InvalidOid;
	Oid			handler;
	char	   *api_key;
	TimestampTz deadline;
	long		delay_ms = WAIT_FIRST_DELAY_MS;
	MemoryContext poll_cxt;
	MemoryContext oldcxt;
	Datum	   *values;
	bool	   *nulls;
	char	   *last_progress = NULL;
	AclResult	aclresult;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	batch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	timeout_us = interval_to_usecs(PG_GETARG_INTERVAL_P(1));
	if (timeout_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the timeout of nimble_wait_batch must not be negative")));
	server = PG_ARGISNULL(2) ? only_nimble_server()
		: GetForeignServerByName(NameStr(*PG_GETARG_NAME(2)), false);

	/*
	 * The server's user mapping is what a scan uses, so the caller needs
	 * what using the server takes: USAGE on it, checked before anything
	 * about the server is told.  (A scan needs SELECT on its table; here
	 * there is no table.)
	 */
	aclresult = nimble_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "nimble_wait_batch must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	for (int i = 0; i < tupdesc->natts; i++)
		attrs = lappend_int(attrs, i + 1);

	handler = GetForeignDataWrapper(server->fdwid)->fdwhandler;
	if (!OidIsValid(handler) ||
		strcmp(get_func_name(handler), "nimble_fdw_handler") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a nimble_fdw server", server->servername)));
	nimble_get_server_options(server, &sopts);
	sopts.cache_ttl = 0;

	/*
	 * What to poll is the API's to say: a resource with one row per batch
	 * key and a boolean that turns true, which the returned type must hold.
	 */
	wait = sopts.api->wait;
	topts.relid = InvalidOid;
	topts.serverid = server->serverid;
	topts.api = sopts.api;
	topts.resource = wait ? nimble_resource_lookup(sopts.api, wait->resource) : NULL;
	if (wait)
	{
		done_att = column_index(tupdesc, wait->done_column);
		progress_att = column_index(tupdesc, wait->progress_column);
	}
	if (topts.resource == NULL || topts.resource->keyed == NULL ||
		done_att < 0 || TupleDescAttr(tupdesc, done_att)->atttypid != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the %s API of server \"%s\" has no batch progress to wait on",
						sopts.api->name, server->servername),
				 errhint("Poll the API's batch_progress table instead.")));
	if (progress_att >= 0)
	{
		bool		varlena;

		getTypeOutputInfo(TupleDescAttr(tupdesc, progress_att)->atttypid,
						  &progress_out, &varlena);
	}

	/* the same checks as a scan, in the same order */
	api_key = nimble_scan_credentials(server, &sopts, GetUserId());

	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	deadline = GetCurrentTimestamp() + timeout_us;
	poll_cxt = AllocSetContextCreate(CurrentMemoryContext, "nimble_fdw wait",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		NimbleScan *scan;
		bool		found;
		TimestampTz now;
		long		sleep_ms;

		oldcxt = MemoryContextSwitchTo(poll_cxt);
		scan = nimble_scan_create(poll_cxt, &topts, &sopts, api_key, tupdesc,
								  NIMBLE_ROUTE_KEYED, attrs, false);
		nimble_scan_set_keys(scan, list_make1(batch_id));
		memset(nulls, true, sizeof(bool) * tupdesc->natts);
		found = nimble_scan_next(scan, values, nulls);
		MemoryContextSwitchTo(oldcxt);

		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("batch \"%s\" does not exist", batch_id),
					 errhint("The API answered 404 for its progress: check the batch id and the server's api key.")));
		if (!nulls[done_att] && DatumGetBool(values[done_att]))
		{
			/* the row, copied out of the poll's memory before it goes */
			HeapTuple	tuple = heap_form_tuple(tupdesc, values, nulls);
			Datum		result = HeapTupleGetDatum(tuple);

			MemoryContextDelete(poll_cxt);
			PG_RETURN_DATUM(result);
		}
		if (last_progress)
			pfree(last_progress);
		last_progress = progress_att < 0 || nulls[progress_att] ? NULL
			: OidOutputFunctionCall(progress_out, values[progress_att]);
		MemoryContextReset(poll_cxt);

		now = GetCurrentTimestamp();
		if (now >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("batch \"%s\" did not complete within the timeout", batch_id),
					 errdetail("Its progress was %s at the last poll.",
							   last_progress ? last_progress : "unknown"),
					 errhint("Call nimble_wait_batch again, or with a longer timeout.")));

		/* sleep on the latch: a cancel or statement_timeout ends it at once */
		sleep_ms = Min(delay_ms, TimestampDifferenceMilliseconds(now, deadline));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		delay_ms = Min(delay_ms * 2, WAIT_MAX_DELAY_MS);
	}
}
