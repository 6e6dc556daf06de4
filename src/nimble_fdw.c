/*-------------------------------------------------------------------------
 *
 * nimble_fdw.c
 *		  Foreign data wrapper for the Nimble web-data API's batch jobs.
 *
 * The handler and the FdwRoutine glue: planning is in quals.c, execution
 * in scan.c.  This file turns the plan's fdw_private and fdw_exprs into a
 * running scan, evaluates the key expressions (again on rescan when the
 * parameters change), and shows the route in EXPLAIN.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/explain.h"
#if PG_VERSION_NUM >= 180000
/* 18 moved ExplainState and ExplainProperty* out of explain.h */
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "nimble_fdw.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(nimble_fdw_handler);

void		_PG_init(void);

/* Execution state of one foreign scan node. */
typedef struct NimbleScanState
{
	NimbleTableOptions table;
	NimbleServerOptions server;
	NimblePlanPrivate plan;		/* what the planner decided */
	List	   *key_exprs;		/* ExprState per key expression */
	bool		keys_stale;		/* evaluate the keys before the next row */
	NimbleKeyMatch *match;		/* typed keys: their matcher */
	NimbleScan *scan;			/* NULL for EXPLAIN without ANALYZE */
} NimbleScanState;

/*
 * Module load: the settings, the hooks and callbacks, libcurl.
 */
void
_PG_init(void)
{
	nimble_security_init();
	nimble_option_changes_init();
	nimble_server_state_init();
	nimble_key_join_init();
	nimble_cache_init();
	nimble_http_init();
	nimble_body_pool_init();
	nimble_shmem_init();
	/* last: settings of ours that do not exist are removed, with a warning */
	MarkGUCPrefixReserved("nimble_fdw");
}

/* ----------------------------------------------------------------
 *		Keys
 * ----------------------------------------------------------------
 */

/* Append the text of each key in value (a key, or an array of keys). */
static List *
append_key_texts(List *keys, Datum value, Oid type, bool is_array)
{
	Oid			outfunc;
	bool		varlena;

	if (is_array)
	{
		ArrayType  *array = DatumGetArrayTypeP(value);
		Oid			elemtype = ARR_ELEMTYPE(array);
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		get_typlenbyvalalign(elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(array, elemtype, elmlen, elmbyval, elmalign,
						  &elems, &nulls, &n);
		getTypeOutputInfo(elemtype, &outfunc, &varlena);
		for (int i = 0; i < n; i++)
		{
			/* a NULL never equals a batch id */
			if (!nulls[i])
				keys = lappend(keys, OidOutputFunctionCall(outfunc, elems[i]));
		}
		return keys;
	}
	getTypeOutputInfo(type, &outfunc, &varlena);
	return lappend(keys, OidOutputFunctionCall(outfunc, value));
}

/* Append each non-NULL key in value (a key, or an array of keys). */
static void
append_key_values(Datum **values, int *n, int *cap, Datum value, bool is_array)
{
	Datum	   *elems = &value;
	bool	   *nulls = NULL;
	int			nelems = 1;

	if (is_array)
	{
		ArrayType  *array = DatumGetArrayTypeP(value);
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;

		get_typlenbyvalalign(ARR_ELEMTYPE(array), &elmlen, &elmbyval, &elmalign);
		deconstruct_array(array, ARR_ELEMTYPE(array), elmlen, elmbyval, elmalign,
						  &elems, &nulls, &nelems);
	}
	for (int i = 0; i < nelems; i++)
	{
		if (nulls && nulls[i])
			continue;			/* a NULL never equals a batch id */
		if (*n == *cap)
		{
			*cap *= 2;
			*values = repalloc(*values, sizeof(Datum) * *cap);
		}
		(*values)[(*n)++] = elems[i];
	}
}

/*
 * Give the scan the keys the key expressions have now: as texts for exact
 * keys, as values for the typed matcher; NULLs give none.
 */
static void
evaluate_keys(NimbleScanState *fsstate, ExprContext *econtext)
{
	List	   *texts = NIL;
	int			cap = 16;
	int			n = 0;
	Datum	   *values = NULL;
	ListCell   *lc_expr;
	ListCell   *lc_arr;
	MemoryContext oldcxt = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);

	if (fsstate->match)
		values = palloc(sizeof(Datum) * cap);
	forboth(lc_expr, fsstate->key_exprs, lc_arr, fsstate->plan.is_array)
	{
		ExprState  *state = lfirst(lc_expr);
		bool		isnull;
		Datum		value = ExecEvalExpr(state, econtext, &isnull);

		if (isnull)
			continue;
		if (fsstate->match)
			append_key_values(&values, &n, &cap, value, lfirst_int(lc_arr));
		else
			texts = append_key_texts(texts, value, exprType((Node *) state->expr),
									 lfirst_int(lc_arr));
	}
	MemoryContextSwitchTo(oldcxt);
	if (fsstate->match)
	{
		/* (the matcher copies the values: they may live per tuple) */
		nimble_keymatch_set_keys(fsstate->match, values, n);
		nimble_scan_set_typed_keys(fsstate->scan, fsstate->match);
	}
	else
		nimble_scan_set_keys(fsstate->scan, texts);
}

/* ----------------------------------------------------------------
 *		Executor callbacks
 * ----------------------------------------------------------------
 */

static void
nimble_begin_foreign_scan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	NimbleScanState *fsstate = palloc0(sizeof(NimbleScanState));
	Relation	rel = node->ss.ss_currentRelation;
	Oid			relid = RelationGetRelid(rel);
	ForeignServer *server;
	Oid			userid;
	char	   *api_key;

	node->fdw_state = fsstate;
	nimble_private_from_list(fsplan->fdw_private, &fsstate->plan);
	server = nimble_get_table_options(relid, &fsstate->table, &fsstate->server);

	/* EXPLAIN alone needs no key and makes no request */
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	/* the user whose mapping applies: the view owner's, for a view */
	userid = NIMBLE_SCAN_CHECK_AS_USER(fsplan, estate);
	if (!OidIsValid(userid))
		userid = GetUserId();
	api_key = nimble_scan_credentials(server, &fsstate->server, userid);

	fsstate->key_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	fsstate->keys_stale = (fsplan->fdw_exprs != NIL);
	if (fsplan->fdw_exprs != NIL && fsstate->plan.key_mode == NIMBLE_KEYS_TYPED)
	{
		Form_pg_attribute key = TupleDescAttr(RelationGetDescr(rel),
											  fsstate->plan.key_attno - 1);
		Oid			lefttype;
		Oid			righttype;

		op_input_types(fsstate->plan.key_opno, &lefttype, &righttype);
		fsstate->match = nimble_keymatch_create(estate->es_query_cxt,
												fsstate->plan.key_opno,
												fsstate->plan.key_collation,
												key->atttypid, key->atttypmod,
												righttype);
	}
	fsstate->scan = nimble_scan_create(estate->es_query_cxt, &fsstate->table,
									   &fsstate->server, api_key,
									   RelationGetDescr(rel),
									   fsstate->plan.route,
									   fsstate->plan.retrieved_attrs,
									   fsstate->plan.needs_extra);
	nimble_scan_set_row_bound(fsstate->scan, fsstate->plan.row_bound);
}

static TupleTableSlot *
nimble_iterate_foreign_scan(ForeignScanState *node)
{
	NimbleScanState *fsstate = (NimbleScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	int			natts = slot->tts_tupleDescriptor->natts;

	if (fsstate->keys_stale)
	{
		ExprContext *econtext = node->ss.ps.ps_ExprContext;

		evaluate_keys(fsstate, econtext);
		ResetExprContext(econtext);
		fsstate->keys_stale = false;
	}

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * natts);
	if (nimble_scan_next(fsstate->scan, slot->tts_values, slot->tts_isnull))
		ExecStoreVirtualTuple(slot);
	return slot;
}

static void
nimble_rescan_foreign_scan(ForeignScanState *node)
{
	NimbleScanState *fsstate = (NimbleScanState *) node->fdw_state;

	/* new parameter values mean new keys; else the same requests again */
	if (node->ss.ps.chgParam != NULL && fsstate->key_exprs != NIL)
		fsstate->keys_stale = true;
	nimble_scan_rewind(fsstate->scan);
}

static void
nimble_end_foreign_scan(ForeignScanState *node)
{
	NimbleScanState *fsstate = (NimbleScanState *) node->fdw_state;

	if (fsstate && fsstate->scan)
	{
		nimble_scan_end(fsstate->scan);
		fsstate->scan = NULL;
	}
}

/* ----------------------------------------------------------------
 *		EXPLAIN
 * ----------------------------------------------------------------
 */

/* "/batches/{key}/progress" with the key column's name in the hole. */
static char *
endpoint_text(const NimbleEndpoint *ep, const char *key_column)
{
	return nimble_endpoint_path(ep, psprintf("{%s}", key_column), false);
}

/*
 * How many distinct keys the scan will ask for, when the plan knows:
 * constants only, counted as the scan counts them (nimble_normalize_keys:
 * no NULLs, no repeats, no ids that cannot be asked for); else -1.
 */
static int
count_constant_keys(ForeignScan *fsplan, List *is_array)
{
	ListCell   *lc_expr;
	ListCell   *lc_arr;
	List	   *keys = NIL;
	char	  **texts;
	int			i = 0;
	ListCell   *lc;

	forboth(lc_expr, fsplan->fdw_exprs, lc_arr, is_array)
	{
		Const	   *c = lfirst(lc_expr);

		if (!IsA(c, Const))
			return -1;
		if (!c->constisnull)
			keys = append_key_texts(keys, c->constvalue, c->consttype,
									lfirst_int(lc_arr));
	}
	texts = palloc(sizeof(char *) * Max(list_length(keys), 1));
	foreach(lc, keys)
		texts[i++] = lfirst(lc);
	return nimble_normalize_keys(texts, i);
}

static char *
route_text(NimbleScanState *fsstate, ForeignScan *fsplan)
{
	const NimbleResourceDef *res = fsstate->table.resource;
	const NimblePlanPrivate *plan = &fsstate->plan;
	const char *key = plan->key_column;
	bool		typed = fsplan->fdw_exprs != NIL && plan->key_mode == NIMBLE_KEYS_TYPED;
	StringInfoData buf;

	initStringInfo(&buf);
	switch (plan->route)
	{
		case NIMBLE_ROUTE_KEYED:
			{
				int			n = count_constant_keys(fsplan, plan->is_array);

				appendStringInfo(&buf, "GET %s",
								 endpoint_text(res->keyed, key));
				if (plan->parameterized)
					appendStringInfoString(&buf, " per outer row");
				else if (n >= 0)
					appendStringInfo(&buf, " for %d key%s", n, n == 1 ? "" : "s");
				else
					appendStringInfoString(&buf, " per key of the condition");
				break;
			}
		case NIMBLE_ROUTE_LIST_KEYED:
			appendStringInfo(&buf, "GET %s (all pages), then GET %s per %s%s",
							 endpoint_text(res->list, key),
							 endpoint_text(res->keyed, key),
							 res->unit_noun,
							 typed ? " whose key matches" : "");
			break;
		case NIMBLE_ROUTE_LIST_ROWS:
			appendStringInfo(&buf, "GET %s (all pages)",
							 endpoint_text(res->list, key));
			if (plan->needs_extra)
				appendStringInfo(&buf, ", then GET %s per %s%s",
								 endpoint_text(res->extra, key),
								 res->unit_noun, typed ? " whose key matches" : "");
			if (fsplan->fdw_exprs != NIL && !typed)
				appendStringInfoString(&buf, ", until every key is found");
			break;
	}
	return buf.data;
}

/*
 * The pushed condition, as the user would write it; for typed keys, with
 * how they are matched and why they are not sent.
 */
static char *
keys_text(NimbleScanState *fsstate, ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	const NimblePlanPrivate *plan = &fsstate->plan;
	List	   *context = set_deparse_context_plan(es->deparse_cxt,
												   node->ss.ps.plan, NIL);
	StringInfoData buf;
	ListCell   *lc_expr;
	ListCell   *lc_arr;

	initStringInfo(&buf);
	forboth(lc_expr, fsplan->fdw_exprs, lc_arr, plan->is_array)
	{
		char	   *expr = deparse_expression(lfirst(lc_expr), context, false, false);

		if (buf.len > 0)
			appendStringInfoString(&buf, " OR ");
		if (lfirst_int(lc_arr))
			appendStringInfo(&buf, "%s = ANY (%s)",
							 quote_identifier(plan->key_column), expr);
		else
			appendStringInfo(&buf, "%s = %s",
							 quote_identifier(plan->key_column), expr);
	}
	if (plan->key_mode == NIMBLE_KEYS_TYPED)
	{
		Relation	rel = node->ss.ss_currentRelation;
		Form_pg_attribute key = TupleDescAttr(RelationGetDescr(rel), plan->key_attno - 1);
		const char *collation = "";

		if (OidIsValid(plan->key_collation) &&
			!get_collation_isdeterministic(plan->key_collation))
			collation = psprintf(" under collation %s",
								 quote_identifier(get_collation_name(plan->key_collation)));
		appendStringInfo(&buf, ", matched in the list by the = of %s%s (not sent: it is not the API's exact match on ids)",
						 format_type_with_typemod(key->atttypid, key->atttypmod),
						 collation);
	}
	return buf.data;
}

static void
nimble_explain_foreign_scan(ForeignScanState *node, ExplainState *es)
{
	NimbleScanState *fsstate = (NimbleScanState *) node->fdw_state;
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;

	ExplainPropertyText("Nimble Resource", fsstate->table.resource->name, es);
	ExplainPropertyText("Nimble Route", route_text(fsstate, fsplan), es);
	if (fsstate->plan.row_bound > 0)
		ExplainPropertyInteger("Nimble Row Bound", NULL, fsstate->plan.row_bound, es);
	if (fsplan->fdw_exprs != NIL)
		ExplainPropertyText("Nimble Keys", keys_text(fsstate, node, es), es);
	else if (fsstate->plan.unpushed)
		ExplainPropertyText("Nimble Keys",
							psprintf("none pushed: %s", fsstate->plan.unpushed), es);
	if (es->analyze && fsstate->scan)
		nimble_explain_scan_stats(nimble_scan_stats(fsstate->scan),
								  &fsstate->server, true, es);
}

/*
 * EXPLAIN ANALYZE's counts of a scan's requests, for a foreign scan and
 * the key join alike; list_pages: the scan may walk the list.
 */
void
nimble_explain_scan_stats(const NimbleScanStats *stats,
						  const NimbleServerOptions *server, bool list_pages,
						  ExplainState *es)
{
	ExplainPropertyInteger("Nimble Requests", NULL, stats->requests, es);
	if (list_pages)
		ExplainPropertyInteger("Nimble List Pages", NULL, stats->pages, es);
	ExplainPropertyInteger("Nimble Retries", NULL, stats->retries, es);
	ExplainPropertyInteger("Nimble Bytes", NULL, stats->bytes, es);
	if (server->cache_ttl > 0)
		ExplainPropertyInteger("Nimble Cache Hits", NULL, stats->cache_hits, es);
	/* how the transfers went: depends on what earlier queries left open */
	if (es->verbose)
	{
		ExplainPropertyInteger("Nimble New Connections", NULL,
							   stats->connections, es);
		if (stats->http_version > 0)
			ExplainPropertyInteger("Nimble HTTP Version", NULL,
								   stats->http_version, es);
	}
	/* a duration: shown with the timings, like the node's own times */
	if (es->timing && stats->rate_limit_wait_us >= 1000)
		ExplainPropertyInteger("Nimble Rate Limit Wait", "ms",
							   stats->rate_limit_wait_us / 1000, es);
}

/* ----------------------------------------------------------------
 *		Handler
 * ----------------------------------------------------------------
 */

static List *
nimble_import_foreign_schema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	return nimble_import_schema(stmt, serverOid);
}

/*
 * The FDW handler: nimble_fdw's FdwRoutine.
 */
Datum
nimble_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = nimble_get_rel_size;
	routine->GetForeignPaths = nimble_get_paths;
	routine->GetForeignPlan = nimble_get_plan;
	routine->BeginForeignScan = nimble_begin_foreign_scan;
	routine->IterateForeignScan = nimble_iterate_foreign_scan;
	routine->ReScanForeignScan = nimble_rescan_foreign_scan;
	routine->EndForeignScan = nimble_end_foreign_scan;
	routine->ExplainForeignScan = nimble_explain_foreign_scan;
	routine->ImportForeignSchema = nimble_import_foreign_schema;
	routine->AnalyzeForeignTable = nimble_analyze_foreign_table;

	PG_RETURN_POINTER(routine);
}
