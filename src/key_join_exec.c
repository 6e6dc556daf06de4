/*-------------------------------------------------------------------------
 *
 * key_join_exec.c
 *		  Running the key join (key_join.c has the why and the plan).
 *
 * The scan tuple of the node holds the outer plan's columns, then the
 * inner table's columns that the join uses; the plan's quals, target list
 * and custom_exprs refer to it (INDEX_VAR).  The node fills it: for each
 * outer row, with each inner row of the row's key in turn (and the further
 * join conditions checked), or with NULLs where a LEFT or ANTI join keeps
 * an outer row without a match.  ExecScan applies the conditions above the
 * join and the projection.
 *
 * Memory: the outer block lives in block_cxt (reset per block), the inner
 * rows of the keys asked for so far in keys_cxt (dropped when it passes
 * work_mem and a key is missing, and on a rescan that changes the inner
 * table's conditions).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/explain.h"
#include "common/hashfn.h"
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_relation.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "key_join.h"

/* The inner rows of one key, as the keyed scan gave them. */
typedef struct KeyRows
{
	char	   *key;			/* hash key: the key's text */
	List	   *rows;			/* MinimalTuple of the inner table's rows */
} KeyRows;

typedef struct KeyJoinState
{
	CustomScanState css;

	/* the plan */
	Index		inner_rti;
	JoinType	jointype;
	int			block_rows;
	int			nouter;			/* scan tuple columns from the outer side */
	List	   *inner_attnos;	/* the inner column of each further one */
	NimblePlanPrivate inner_plan;
	ExprState  *key_expr;
	ExprState  *join_qual;
	ExprState  *inner_qual;
	Bitmapset  *inner_params;	/* the PARAM_EXEC ids inner_qual uses */

	/* the inner table */
	Relation	inner_rel;
	NimbleTableOptions table;
	NimbleServerOptions server;
	NimbleScan *scan;			/* NULL for EXPLAIN alone */
	Oid			key_out;		/* the key expression's output function */
	TupleTableSlot *inner_slot; /* an inner row, in the table's shape */
	Datum	   *inner_values;
	bool	   *inner_nulls;

	/* the outer block */
	MemoryContext block_cxt;
	TupleTableSlot *outer_slot; /* a stored outer row */
	MinimalTuple *outer_rows;
	char	  **outer_keys;		/* NULL: the row's key is NULL */
	int			nblock;
	int			next_row;
	bool		outer_done;

	/* the inner rows of the keys asked for so far */
	MemoryContext keys_cxt;
	HTAB	   *keys;

	/* the outer row being joined */
	bool		have_row;
	ListCell   *next_match;
	List	   *matches;
	bool		matched;

	/* for EXPLAIN ANALYZE */
	int64		blocks;
	int64		distinct_keys;	/* keys asked for (again after a drop) */
	int64		stopped_fetches;	/* fetches cut short by work_mem */
} KeyJoinState;

static Node *create_key_join_state(CustomScan *cscan);
static void begin_key_join(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_key_join(CustomScanState *node);
static void end_key_join(CustomScanState *node);
static void rescan_key_join(CustomScanState *node);
static void explain_key_join(CustomScanState *node, List *ancestors,
							 ExplainState *es);

const CustomScanMethods nimble_key_join_scan_methods = {
	.CustomName = NIMBLE_KEY_JOIN_NAME,
	.CreateCustomScanState = create_key_join_state,
};

static const CustomExecMethods key_join_exec_methods = {
	.CustomName = NIMBLE_KEY_JOIN_NAME,
	.BeginCustomScan = begin_key_join,
	.ExecCustomScan = exec_key_join,
	.EndCustomScan = end_key_join,
	.ReScanCustomScan = rescan_key_join,
	.ExplainCustomScan = explain_key_join,
};

static Node *
create_key_join_state(CustomScan *cscan)
{
	KeyJoinState *kjs = palloc0(sizeof(KeyJoinState));

	NodeSetTag(kjs, T_CustomScanState);
	kjs->css.methods = &key_join_exec_methods;
	return (Node *) kjs;
}

/* The table of keys asked for is keyed by pointers to their texts. */
static uint32
key_text_hash(const void *key, Size keysize)
{
	const char *text = *(const char *const *) key;

	return hash_bytes((const unsigned char *) text, strlen(text));
}

static int
key_text_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/* A fresh table of keys asked for, in keys_cxt. */
static void
reset_keys(KeyJoinState *kjs)
{
	HASHCTL		ctl;

	MemoryContextReset(kjs->keys_cxt);
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(KeyRows);
	ctl.hash = key_text_hash;
	ctl.match = key_text_match;
	ctl.hcxt = kjs->keys_cxt;
	kjs->keys = hash_create("nimble_fdw key join", 256, &ctl,
							HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* The PARAM_EXEC ids in node, added to *params (expression walker). */
static bool
collect_exec_params(Node *node, Bitmapset **params)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		*params = bms_add_member(*params, ((Param *) node)->paramid);
	return expression_tree_walker(node, collect_exec_params, params);
}

static void
begin_key_join(CustomScanState *node, EState *estate, int eflags)
{
	KeyJoinState *kjs = (KeyJoinState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *priv = cscan->custom_private;
	Plan	   *outer_plan = linitial(cscan->custom_plans);
	PlanState  *outer;
	RangeTblEntry *rte;
	ForeignServer *server;
	Oid			userid;
	bool		varlena;

	{
		int			pos = intVal(list_nth(priv, KJ_INNER_POS));
		int			m = -1;

		for (int i = 0; i <= pos; i++)
			m = bms_next_member(cscan->custom_relids, m);
		Assert(m > 0);
		kjs->inner_rti = (Index) m;
	}
	kjs->jointype = (JoinType) intVal(list_nth(priv, KJ_JOINTYPE));
	kjs->block_rows = intVal(list_nth(priv, KJ_BLOCK_ROWS));
	kjs->nouter = intVal(list_nth(priv, KJ_NOUTER));
	kjs->inner_attnos = (List *) list_nth(priv, KJ_INNER_ATTNOS);
	nimble_private_from_list((List *) list_nth(priv, KJ_INNER_PLAN), &kjs->inner_plan);

	outer = ExecInitNode(outer_plan, estate, eflags);
	node->custom_ps = list_make1(outer);
	kjs->key_expr = ExecInitExpr(list_nth(cscan->custom_exprs, KJ_KEY_EXPR),
								 &node->ss.ps);
	kjs->join_qual = ExecInitQual(list_nth(cscan->custom_exprs, KJ_JOIN_QUALS),
								  &node->ss.ps);
	kjs->inner_qual = ExecInitQual(list_nth(cscan->custom_exprs, KJ_INNER_QUALS),
								   &node->ss.ps);
	(void) collect_exec_params(list_nth(cscan->custom_exprs, KJ_INNER_QUALS),
							   &kjs->inner_params);
	getTypeOutputInfo(exprType(list_nth(cscan->custom_exprs, KJ_KEY_EXPR)),
					  &kjs->key_out, &varlena);

	kjs->inner_rel = nimble_range_table_relation(estate, kjs->inner_rti);
	kjs->outer_slot = MakeSingleTupleTableSlot(ExecGetResultType(outer),
											   &TTSOpsMinimalTuple);
	kjs->inner_slot = MakeSingleTupleTableSlot(RelationGetDescr(kjs->inner_rel),
											   &TTSOpsMinimalTuple);
	kjs->inner_values = palloc(sizeof(Datum) * RelationGetDescr(kjs->inner_rel)->natts);
	kjs->inner_nulls = palloc(sizeof(bool) * RelationGetDescr(kjs->inner_rel)->natts);
	kjs->block_cxt = AllocSetContextCreate(estate->es_query_cxt,
										   "nimble_fdw key join block",
										   ALLOCSET_DEFAULT_SIZES);
	kjs->keys_cxt = AllocSetContextCreate(estate->es_query_cxt,
										  "nimble_fdw key join rows",
										  ALLOCSET_DEFAULT_SIZES);
	reset_keys(kjs);

	server = nimble_get_table_options(RelationGetRelid(kjs->inner_rel),
									  &kjs->table, &kjs->server);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	/* the inner table's user mapping, as a scan of it would use */
	rte = exec_rt_fetch(kjs->inner_rti, estate);
	userid = NIMBLE_RTE_CHECK_AS_USER(estate, rte);
	if (!OidIsValid(userid))
		userid = GetUserId();
	kjs->scan = nimble_scan_create(estate->es_query_cxt, &kjs->table, &kjs->server,
								   nimble_scan_credentials(server, &kjs->server, userid),
								   RelationGetDescr(kjs->inner_rel),
								   NIMBLE_ROUTE_KEYED,
								   kjs->inner_plan.retrieved_attrs, false);
}

/*
 * Fill the scan tuple: the outer part from outer (a slot of the outer
 * plan's shape, or NULL for none), the inner part from inner (the table's
 * shape, or NULL: NULLs).
 */
static void
fill_scan_tuple(KeyJoinState *kjs, TupleTableSlot *outer, TupleTableSlot *inner)
{
	TupleTableSlot *slot = kjs->css.ss.ss_ScanTupleSlot;
	int			i = kjs->nouter;
	ListCell   *lc;

	ExecClearTuple(slot);
	if (outer)
	{
		slot_getallattrs(outer);
		memcpy(slot->tts_values, outer->tts_values, sizeof(Datum) * kjs->nouter);
		memcpy(slot->tts_isnull, outer->tts_isnull, sizeof(bool) * kjs->nouter);
	}
	else
		memset(slot->tts_isnull, true, sizeof(bool) * kjs->nouter);
	if (inner)
		slot_getallattrs(inner);
	foreach(lc, kjs->inner_attnos)
	{
		int			att = lfirst_int(lc) - 1;

		if (inner == NULL)
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
		else if (att < 0)
		{
			/* the whole row, as a value of the table's row type */
			MemoryContext oldcxt =
				MemoryContextSwitchTo(kjs->css.ss.ps.ps_ExprContext->ecxt_per_tuple_memory);

			slot->tts_values[i] = ExecFetchSlotHeapTupleDatum(inner);
			slot->tts_isnull[i] = false;
			MemoryContextSwitchTo(oldcxt);
		}
		else
		{
			slot->tts_values[i] = inner->tts_values[att];
			slot->tts_isnull[i] = inner->tts_isnull[att];
		}
		i++;
	}
	Assert(i == slot->tts_tupleDescriptor->natts);
	ExecStoreVirtualTuple(slot);
}

/* Is the scan tuple's condition qual true?  (NULL: no condition) */
static bool
scan_tuple_passes(KeyJoinState *kjs, ExprState *qual)
{
	ExprContext *econtext = kjs->css.ss.ps.ps_ExprContext;

	if (qual == NULL)
		return true;
	econtext->ecxt_scantuple = kjs->css.ss.ss_ScanTupleSlot;
	return ExecQual(qual, econtext);
}

/* Is the memory of the keys' rows past work_mem? */
static bool
keys_over_work_mem(KeyJoinState *kjs)
{
	return MemoryContextMemAllocated(kjs->keys_cxt, true) > (Size) work_mem * 1024;
}

/*
 * Ask for the keys of the block's outer rows from start on that are not
 * known yet, all at once (the keyed scan runs max_concurrency requests at
 * a time), and keep the inner rows that pass the inner table's own
 * conditions, by their key column's text: the same test as the exact key
 * condition.
 *
 * Memory: when the rows kept pass work_mem, the scan stops as soon as the
 * key of the row at start is done; the keys after the one being read are
 * forgotten, to be asked for again when a later row needs them (after the
 * rows kept so far are dropped).  A nested loop holds one key's rows at a
 * time; this holds a block's, up to work_mem, and never less than one key's.
 */
static void
fetch_keys(KeyJoinState *kjs, int start)
{
	List	   *wanted = NIL;
	TupleDesc	desc = RelationGetDescr(kjs->inner_rel);
	int			key_att = kjs->inner_plan.key_attno - 1;
	Oid			key_out;
	bool		varlena;
	char	  **scan_keys;
	int			nscan_keys;
	int			current;
	int			start_place = -1;
	MemoryContext oldcxt = MemoryContextSwitchTo(kjs->block_cxt);

	for (int i = start; i < kjs->nblock; i++)
	{
		char	   *key = kjs->outer_keys[i];
		bool		found;
		KeyRows    *entry;

		if (key == NULL)
			continue;
		entry = hash_search(kjs->keys, &key, HASH_ENTER, &found);
		if (found)
			continue;
		entry->key = MemoryContextStrdup(kjs->keys_cxt, key);
		entry->rows = NIL;
		wanted = lappend(wanted, entry->key);
	}
	MemoryContextSwitchTo(oldcxt);
	if (wanted == NIL)
		return;
	kjs->distinct_keys += list_length(wanted);

	getTypeOutputInfo(TupleDescAttr(desc, key_att)->atttypid, &key_out, &varlena);
	nimble_scan_rewind(kjs->scan);
	nimble_scan_set_keys(kjs->scan, wanted);
	scan_keys = nimble_scan_keys(kjs->scan, &nscan_keys, &current);
	if (kjs->outer_keys[start] != NULL)
		start_place = nimble_find_key(scan_keys, nscan_keys, kjs->outer_keys[start]);
	for (;;)
	{
		char	   *key;
		KeyRows    *entry;

		CHECK_FOR_INTERRUPTS();
		memset(kjs->inner_nulls, true, sizeof(bool) * desc->natts);
		if (!nimble_scan_next(kjs->scan, kjs->inner_values, kjs->inner_nulls))
			break;
		(void) nimble_scan_keys(kjs->scan, &nscan_keys, &current);
		if (current > start_place && keys_over_work_mem(kjs))
		{
			/* stop: the key being read and those after it are not done */
			for (int i = current; i < nscan_keys; i++)
			{
				char	   *undone = scan_keys[i];

				(void) hash_search(kjs->keys, &undone, HASH_REMOVE, NULL);
			}
			kjs->stopped_fetches++;
			break;
		}
		if (kjs->inner_nulls[key_att])
			continue;			/* a row without a key equals no key */
		key = OidOutputFunctionCall(key_out, kjs->inner_values[key_att]);
		entry = hash_search(kjs->keys, &key, HASH_FIND, NULL);
		pfree(key);
		if (entry == NULL)
			continue;			/* the API answered for another id */

		ExecClearTuple(kjs->inner_slot);
		memcpy(kjs->inner_slot->tts_values, kjs->inner_values, sizeof(Datum) * desc->natts);
		memcpy(kjs->inner_slot->tts_isnull, kjs->inner_nulls, sizeof(bool) * desc->natts);
		ExecStoreVirtualTuple(kjs->inner_slot);
		fill_scan_tuple(kjs, NULL, kjs->inner_slot);
		if (!scan_tuple_passes(kjs, kjs->inner_qual))
			continue;
		oldcxt = MemoryContextSwitchTo(kjs->keys_cxt);
		entry->rows = lappend(entry->rows,
							  nimble_form_minimal_tuple(desc, kjs->inner_values,
														kjs->inner_nulls));
		MemoryContextSwitchTo(oldcxt);
	}
	/* what is still in flight is not needed (a stop), or there is none */
	nimble_scan_rewind(kjs->scan);
}

/*
 * Read the next block of outer rows (block_rows, and no more than work_mem
 * of them) with their keys, and fetch the keys not known yet.  False at
 * the end of the outer side.
 */
static bool
next_block(KeyJoinState *kjs)
{
	PlanState  *outer = linitial(kjs->css.custom_ps);
	ExprContext *econtext = kjs->css.ss.ps.ps_ExprContext;
	MemoryContext oldcxt;

	MemoryContextReset(kjs->block_cxt);
	kjs->nblock = 0;
	kjs->next_row = 0;
	if (kjs->outer_done)
		return false;
	oldcxt = MemoryContextSwitchTo(kjs->block_cxt);
	kjs->outer_rows = palloc(sizeof(MinimalTuple) * kjs->block_rows);
	kjs->outer_keys = palloc(sizeof(char *) * kjs->block_rows);
	MemoryContextSwitchTo(oldcxt);

	while (kjs->nblock < kjs->block_rows &&
		   MemoryContextMemAllocated(kjs->block_cxt, true) <= (Size) work_mem * 1024)
	{
		TupleTableSlot *slot = ExecProcNode(outer);
		bool		isnull;
		Datum		key;

		if (TupIsNull(slot))
		{
			kjs->outer_done = true;
			break;
		}
		fill_scan_tuple(kjs, slot, NULL);
		econtext->ecxt_scantuple = kjs->css.ss.ss_ScanTupleSlot;
		key = ExecEvalExpr(kjs->key_expr, econtext, &isnull);
		oldcxt = MemoryContextSwitchTo(kjs->block_cxt);
		kjs->outer_rows[kjs->nblock] = ExecCopySlotMinimalTuple(slot);
		kjs->outer_keys[kjs->nblock] = isnull ? NULL
			: OidOutputFunctionCall(kjs->key_out, key);
		MemoryContextSwitchTo(oldcxt);
		kjs->nblock++;
		ResetExprContext(econtext);
	}
	if (kjs->nblock == 0)
		return false;
	kjs->blocks++;
	return true;
}

/* The scan tuple for the current outer row with inner row tuple (or NULLs). */
static void
pair_current(KeyJoinState *kjs, MinimalTuple inner)
{
	if (inner)
		ExecStoreMinimalTuple(inner, kjs->inner_slot, false);
	fill_scan_tuple(kjs, kjs->outer_slot, inner ? kjs->inner_slot : NULL);
}

/*
 * The next joined scan tuple, as a nested loop of this join type would
 * make them, or NULL at the end.
 */
static TupleTableSlot *
next_joined(CustomScanState *node)
{
	KeyJoinState *kjs = (KeyJoinState *) node;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		/* the current outer row's next match */
		while (kjs->have_row && kjs->next_match)
		{
			MinimalTuple inner = lfirst(kjs->next_match);

			kjs->next_match = lnext(kjs->matches, kjs->next_match);
			pair_current(kjs, inner);
			if (!scan_tuple_passes(kjs, kjs->join_qual))
				continue;
			kjs->matched = true;
			switch (kjs->jointype)
			{
				case JOIN_SEMI:
					kjs->next_match = NULL; /* the row once, for its first match */
					return node->ss.ss_ScanTupleSlot;
				case JOIN_ANTI:
					kjs->next_match = NULL; /* a match: the row goes */
					break;
				default:
					return node->ss.ss_ScanTupleSlot;
			}
		}
		/* its matches are done: without any, LEFT and ANTI keep it */
		if (kjs->have_row)
		{
			kjs->have_row = false;
			if (!kjs->matched &&
				(kjs->jointype == JOIN_LEFT || kjs->jointype == JOIN_ANTI))
			{
				pair_current(kjs, NULL);
				return node->ss.ss_ScanTupleSlot;
			}
		}
		/* the next outer row */
		if (kjs->next_row >= kjs->nblock && !next_block(kjs))
			return ExecClearTuple(node->ss.ss_ScanTupleSlot);
		{
			char	   *key = kjs->outer_keys[kjs->next_row];
			KeyRows    *entry = key ? hash_search(kjs->keys, &key, HASH_FIND, NULL) : NULL;

			/*
			 * A key not asked for yet: ask for it with the rest of the
			 * block's, dropping what earlier keys gave if it passes work_mem
			 * (no row is using it between two outer rows)
			 */
			if (key && entry == NULL)
			{
				if (keys_over_work_mem(kjs))
					reset_keys(kjs);
				fetch_keys(kjs, kjs->next_row);
				entry = hash_search(kjs->keys, &key, HASH_FIND, NULL);
				Assert(entry != NULL);
			}

			ExecStoreMinimalTuple(kjs->outer_rows[kjs->next_row], kjs->outer_slot, false);
			kjs->next_row++;
			kjs->have_row = true;
			kjs->matched = false;
			kjs->matches = entry ? entry->rows : NIL;
			kjs->next_match = list_head(kjs->matches);
		}
	}
}

/* ExecScan's recheck: the rows are the join's own, nothing to recheck. */
static bool
recheck_key_join(ScanState *node, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
exec_key_join(CustomScanState *node)
{
	return ExecScan(&node->ss, (ExecScanAccessMtd) next_joined,
					(ExecScanRecheckMtd) recheck_key_join);
}

static void
rescan_key_join(CustomScanState *node)
{
	KeyJoinState *kjs = (KeyJoinState *) node;
	PlanState  *outer = linitial(node->custom_ps);

	/*
	 * The outer side again; what its keys gave stays (asked once a query),
	 * unless the inner table's own conditions, which chose the rows kept,
	 * take a parameter that changed
	 */
	if (outer->chgParam == NULL)
		ExecReScan(outer);
	if (bms_overlap(node->ss.ps.chgParam, kjs->inner_params))
		reset_keys(kjs);
	MemoryContextReset(kjs->block_cxt);
	kjs->nblock = 0;
	kjs->next_row = 0;
	kjs->outer_done = false;
	kjs->have_row = false;
	kjs->next_match = NULL;
}

static void
end_key_join(CustomScanState *node)
{
	KeyJoinState *kjs = (KeyJoinState *) node;

	if (kjs->scan)
	{
		nimble_scan_end(kjs->scan);
		kjs->scan = NULL;
	}
	ExecEndNode(linitial(node->custom_ps));
	ExecDropSingleTupleTableSlot(kjs->outer_slot);
	ExecDropSingleTupleTableSlot(kjs->inner_slot);
}

static const char *
join_type_name(JoinType jointype)
{
	switch (jointype)
	{
		case JOIN_INNER:
			return "Inner";
		case JOIN_LEFT:
			return "Left";
		case JOIN_SEMI:
			return "Semi";
		case JOIN_ANTI:
			return "Anti";
		default:
			return "?";
	}
}

/* A list of conditions, ANDed, as EXPLAIN shows a node's filters. */
static void
explain_quals(const char *label, List *quals, List *context, ExplainState *es)
{
	Node	   *expr;

	if (quals == NIL)
		return;
	expr = list_length(quals) == 1 ? linitial(quals)
		: (Node *) make_andclause(quals);
	ExplainPropertyText(label, deparse_expression(expr, context, true, false), es);
}

static void
explain_key_join(CustomScanState *node, List *ancestors, ExplainState *es)
{
	KeyJoinState *kjs = (KeyJoinState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *context = set_deparse_context_plan(es->deparse_cxt,
												   node->ss.ps.plan, ancestors);
	const NimbleResourceDef *res = kjs->table.resource;

	ExplainPropertyText("Nimble Resource", res->name, es);
	ExplainPropertyText("Nimble Route",
						psprintf("GET %s per distinct key of the outer side, %d outer rows a block",
								 nimble_endpoint_path(res->keyed,
													  psprintf("{%s}", res->key_column),
													  false),
								 kjs->block_rows),
						es);
	ExplainPropertyText("Nimble Join Type", join_type_name(kjs->jointype), es);
	ExplainPropertyText("Nimble Keys",
						psprintf("%s = %s", quote_identifier(res->key_column),
								 deparse_expression(list_nth(cscan->custom_exprs, KJ_KEY_EXPR),
													context, true, false)),
						es);
	explain_quals("Join Filter", list_nth(cscan->custom_exprs, KJ_JOIN_QUALS),
				  context, es);
	explain_quals("Nimble Inner Filter", list_nth(cscan->custom_exprs, KJ_INNER_QUALS),
				  context, es);
	if (es->analyze && kjs->scan)
	{
		ExplainPropertyInteger("Nimble Blocks", NULL, kjs->blocks, es);
		ExplainPropertyInteger("Nimble Distinct Keys", NULL, kjs->distinct_keys, es);
		if (kjs->stopped_fetches > 0)
			ExplainPropertyInteger("Nimble Fetches Cut by work_mem", NULL,
								   kjs->stopped_fetches, es);
		nimble_explain_scan_stats(nimble_scan_stats(kjs->scan), &kjs->server,
								  false, es);
	}
}
