/*-------------------------------------------------------------------------
 *
 * analyze.c
 *		  ANALYZE of a nimble_fdw table: a sample bought with a fixed number
 *		  of requests.
 *
 * Autovacuum never analyzes a foreign table, and without statistics every
 * backend plans as if the account held NIMBLE_DEFAULT_LIST_ITEMS batches.
 * ANALYZE reads the table through the scan a query uses (scan.c), made a
 * sample: at most the server's analyze_requests requests, half of them at
 * most list pages, the units read spread evenly over the part of the list
 * those pages reach.  The list's stated total gives the number of units
 * (batches, tasks); the sample gives the rows per unit and the columns'
 * statistics.
 *
 * The sample is taken in AnalyzeForeignTable, before ANALYZE asks for its
 * rows: ANALYZE stores what that callback reports as the table's page count
 * in pg_class.relpages, and nimble_fdw stores there the number of units,
 * which only the sample knows.  With reltuples, that gives the planner both
 * the list's size and the rows per unit (quals.c).  The sample waits in a
 * context of the transaction until the acquire callback hands it over.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/sampling.h"

#include "nimble_fdw.h"

/* A table's sample, from AnalyzeForeignTable to its acquire callback. */
typedef struct PendingSample
{
	Oid			relid;
	MemoryContext cxt;			/* holds this and the rows */
	HeapTuple  *rows;
	int			nrows;
	int			cap;
	double		totalrows;		/* the table's estimated rows */
	double		units;			/* units in the list */
	int64		units_read;		/* of which read */
	int64		requests;		/* requests made, retries not counted */
	const char *unit_plural;
} PendingSample;

/*
 * The samples taken and not yet handed over: one per table, more than one
 * when ANALYZE of an inheritance parent asks each child first.  Each lives
 * in its own context under the transaction, which takes it off this list
 * when it goes, on error as well.
 */
static List *pending_samples = NIL;

static void
forget_pending_sample(void *arg)
{
	pending_samples = list_delete_ptr(pending_samples, arg);
}

/* The sample of relid waiting for its acquire callback, or NULL. */
static PendingSample *
find_pending_sample(Oid relid)
{
	ListCell   *lc;

	foreach(lc, pending_samples)
	{
		PendingSample *sample = lfirst(lc);

		if (sample->relid == relid)
			return sample;
	}
	return NULL;
}

/* Drop relid's sample, if one is waiting. */
static void
drop_pending_sample(Oid relid)
{
	PendingSample *sample = find_pending_sample(relid);

	if (sample)
		MemoryContextDelete(sample->cxt);	/* forget_pending_sample runs */
}

/*
 * The route of a sample: the list's items where they are the rows (with
 * their enrichment when a column needs it), else the list walked for units
 * and each unit's keyed rows.
 */
static NimbleRoute
sample_route(Relation rel, const NimbleResourceDef *res, List **attrs,
			 bool *needs_extra)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	NimbleRoute route = res->list_rows ? NIMBLE_ROUTE_LIST_ROWS
		: NIMBLE_ROUTE_LIST_KEYED;

	*attrs = NIL;
	*needs_extra = false;
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		NimbleSource source;

		if (attr->attisdropped)
			continue;
		*attrs = lappend_int(*attrs, attr->attnum);
		(void) nimble_column_path(res, NameStr(attr->attname),
								  nimble_get_column_field(RelationGetRelid(rel),
														  attr->attnum),
								  route, &source);
		if (source == NIMBLE_SRC_EXTRA)
			*needs_extra = true;
	}
	return route;
}

/*
 * The number of units the list holds: its stated total, else what a walk
 * to its end counted, else (a walk the budget cut short, of a list that
 * states no total) what the walk met, which is less than the truth.
 */
static double
units_in_list(Relation rel, const NimbleScanSeen *seen, int elevel)
{
	if (seen->list_total >= 0)
		return seen->list_total;
	if (seen->list_complete)
		return seen->units_listed;
	ereport(elevel,
			(errmsg("\"%s\": the list states no total, and analyze_requests ended the walk after %lld items: the row estimate is a lower bound",
					RelationGetRelationName(rel), (long long) seen->units_listed),
			 errhint("Raise the server's analyze_requests option for a better estimate.")));
	return seen->units_listed;
}

/*
 * Take the sample of rel: run the scan under its budget, keep every row it
 * gives, and work out the table's rows and units.
 */
static PendingSample *
take_sample(Relation rel, BlockNumber *units_out)
{
	Oid			relid = RelationGetRelid(rel);
	MemoryContext cxt;
	MemoryContext oldcxt;
	PendingSample *sample;
	NimbleTableOptions *table;
	NimbleServerOptions *server;
	ForeignServer *fserver;
	char	   *api_key;
	List	   *attrs;
	bool		needs_extra;
	NimbleRoute route;
	NimbleScan *scan;
	NimbleScanSeen seen;
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Datum	   *values;
	bool	   *nulls;
	MemoryContextCallback *cb;
	double		units;

	cxt = AllocSetContextCreate(TopTransactionContext, "nimble_fdw analyze sample",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	sample = palloc0(sizeof(PendingSample));
	sample->relid = relid;
	sample->cxt = cxt;
	sample->cap = 1024;
	sample->rows = palloc(sizeof(HeapTuple) * sample->cap);
	pending_samples = lappend(pending_samples, sample);
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = forget_pending_sample;
	cb->arg = sample;
	MemoryContextRegisterResetCallback(cxt, cb);

	table = palloc0(sizeof(NimbleTableOptions));
	server = palloc0(sizeof(NimbleServerOptions));
	fserver = nimble_get_table_options(relid, table, server);
	/* whoever runs ANALYZE, the owner's mapping pays, as for postgres_fdw */
	api_key = nimble_scan_credentials(fserver, server, rel->rd_rel->relowner);

	route = sample_route(rel, table->resource, &attrs, &needs_extra);
	scan = nimble_scan_create(cxt, table, server, api_key, tupdesc, route,
							  attrs, needs_extra);
	nimble_scan_set_sample(scan, server->analyze_requests);

	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		memset(nulls, true, sizeof(bool) * tupdesc->natts);
		if (!nimble_scan_next(scan, values, nulls))
			break;
		if (sample->nrows == sample->cap)
		{
			sample->cap *= 2;
			sample->rows = repalloc_huge(sample->rows,
										 sizeof(HeapTuple) * sample->cap);
		}
		sample->rows[sample->nrows++] = heap_form_tuple(tupdesc, values, nulls);
	}
	nimble_scan_seen(scan, &seen);
	nimble_scan_end(scan);
	MemoryContextSwitchTo(oldcxt);

	/*
	 * Rows: where the list's items are the rows, one per unit; else the
	 * rows per unit read, times the units.
	 */
	units = units_in_list(rel, &seen, WARNING);
	if (route == NIMBLE_ROUTE_LIST_ROWS)
		sample->totalrows = Max(units, sample->nrows);
	else if (seen.units_read > 0)
		sample->totalrows = rint(units * sample->nrows / seen.units_read);
	else
		sample->totalrows = 0;

	sample->units = units;
	sample->units_read = seen.units_read;
	sample->requests = seen.requests;
	sample->unit_plural = table->resource->unit_plural;
	*units_out = (BlockNumber) Min(units, (double) MaxBlockNumber);
	return sample;
}

/*
 * AcquireSampleRowsFunc: hand over the sample take_sample took, cut down to
 * targrows by reservoir sampling where it holds more.
 */
static int
nimble_acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows,
						   int targrows, double *totalrows,
						   double *totaldeadrows)
{
	PendingSample *sample = find_pending_sample(RelationGetRelid(rel));
	ReservoirStateData rstate;
	double		rowstoskip = -1;
	int			n = 0;

	/* AnalyzeForeignTable just took it, in this transaction */
	if (sample == NULL)
		elog(ERROR, "nimble_fdw: no sample was taken of \"%s\"",
			 RelationGetRelationName(rel));

	reservoir_init_selection_state(&rstate, targrows);
	for (int i = 0; i < sample->nrows; i++)
	{
		if (n < targrows)
		{
			rows[n++] = heap_copytuple(sample->rows[i]);
			continue;
		}
		/* Vitter's algorithm, as ANALYZE reads a heap: skip, then replace */
		if (rowstoskip < 0)
			rowstoskip = reservoir_get_next_S(&rstate, i, targrows);
		if (rowstoskip <= 0)
		{
			int			k = (int) (targrows * sampler_random_fract(&rstate.randstate));

			heap_freetuple(rows[k]);
			rows[k] = heap_copytuple(sample->rows[i]);
		}
		rowstoskip -= 1;
	}

	*totalrows = sample->totalrows;
	*totaldeadrows = 0;
	ereport(elevel,
			(errmsg("\"%s\": %lld requests read %lld of %.0f %s, %d rows; %d rows in sample, %.0f estimated total rows",
					RelationGetRelationName(rel), (long long) sample->requests,
					(long long) sample->units_read, sample->units,
					sample->unit_plural, sample->nrows, n,
					sample->totalrows)));
	MemoryContextDelete(sample->cxt);
	return n;
}

/*
 * AnalyzeForeignTable: a table whose resource has a list is sampled now
 * (see the file's comment); one without (task_results: results exist only
 * for the task ids a query names) cannot be, and ANALYZE skips it.
 */
bool
nimble_analyze_foreign_table(Relation relation, AcquireSampleRowsFunc *func,
							 BlockNumber *totalpages)
{
	NimbleTableOptions table;
	NimbleServerOptions server;

	(void) nimble_get_table_options(RelationGetRelid(relation), &table, &server);
	if (table.resource->list == NULL)
	{
		ereport(NOTICE,
				(errmsg("the %s API cannot list %s: \"%s\" has nothing to sample",
						table.api->title, table.resource->name,
						RelationGetRelationName(relation)),
				 errdetail("Its rows exist only for the %s ids a query names; the planner counts one row per id.",
						   table.resource->unit_noun)));
		return false;
	}
	drop_pending_sample(RelationGetRelid(relation));
	(void) take_sample(relation, totalpages);
	*func = nimble_acquire_sample_rows;
	return true;
}
