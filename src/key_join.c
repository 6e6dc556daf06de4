/*-------------------------------------------------------------------------
 *
 * key_join.c
 *		  The key join: a join with a nimble_fdw table on its key, whose
 *		  requests go out max_concurrency at a time.  Its path and plan;
 *		  key_join_exec.c runs it.
 *
 * A parameterized nested loop asks the inner scan for one key per outer
 * row, so its requests go one after another.  The key join reads the outer
 * side in blocks (nimble_fdw.key_join_block_rows rows, and no more than
 * work_mem of them), collects a block's distinct non-null keys, and asks
 * for all of them through one keyed scan of the inner table: the same
 * window of max_concurrency requests, rate limit, cache, retries, cancel
 * and errors as WHERE key = ANY(...).  It then pairs each outer row, in
 * order, with the inner rows of its key.
 *
 * It is offered (set_join_pathlist_hook) where the planner joins a
 * nimble_fdw table, as the inner side, on an exact key condition (keys.c):
 * the inner rows found for a key are then exactly those whose key column
 * equals it, and they are matched by the key's text, which is that
 * equality.  INNER, LEFT, SEMI and ANTI joins are done; every further join
 * condition, the inner table's own conditions and the conditions above
 * the join are evaluated here as a nested loop would.
 *
 * What a block's keys gave is kept for later blocks and rescans (a key is
 * asked for once per query), up to work_mem; beyond it, it is dropped and
 * asked for again as needed, and a block's fetch stops early once the row
 * it is for has its rows (key_join_exec.c), so that memory stays near
 * work_mem whatever the batches hold.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/selfuncs.h"

#include "key_join.h"

static bool enable_key_join = true;
static int	key_join_block_rows = 1000;

static set_join_pathlist_hook_type prev_join_pathlist_hook = NULL;

/* ----------------------------------------------------------------
 *		The path
 * ----------------------------------------------------------------
 */

/* A CustomPath, with what the plan will need (the planner never copies it). */
typedef struct KeyJoinPath
{
	CustomPath	cpath;
	RelOptInfo *inner;			/* the nimble_fdw table */
	RestrictInfo *key_clause;	/* inner.key = outer expression */
	List	   *restrictlist;	/* every condition of the join, key_clause
								 * included (the planner passes a join's
								 * custom path none) */
	Expr	   *key_expr;		/* the outer expression */
	JoinType	jointype;
	double		block_rows;
} KeyJoinPath;

static Plan *plan_key_join(PlannerInfo *root, RelOptInfo *rel,
						   CustomPath *best_path, List *tlist,
						   List *clauses, List *custom_plans);

static const CustomPathMethods key_join_path_methods = {
	.CustomName = NIMBLE_KEY_JOIN_NAME,
	.PlanCustomPath = plan_key_join,
};

/* Is rel a nimble_fdw table that the planner has sized (quals.c)? */
static bool
is_nimble_rel(RelOptInfo *rel)
{
	return rel->reloptkind == RELOPT_BASEREL && rel->rtekind == RTE_RELATION &&
		rel->fdwroutine != NULL &&
		rel->fdwroutine->GetForeignRelSize == nimble_get_rel_size &&
		rel->fdw_private != NULL;
}

/* Does node hold a PlaceHolderVar?  (expression_tree_walker callback) */
static bool
contains_placeholder(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, PlaceHolderVar))
		return true;
	return expression_tree_walker(node, contains_placeholder, context);
}

/*
 * Does the join use a system column of the inner table (ctid, tableoid)?
 * The keyed scan has none to give.  Its whole row it can give.
 */
static bool
uses_inner_system_column(RelOptInfo *joinrel, RelOptInfo *inner,
						 List *restrictlist)
{
	Bitmapset  *attrs = NULL;
	ListCell   *lc;
	int			m;

	pull_varattnos((Node *) joinrel->reltarget->exprs, inner->relid, &attrs);
	foreach(lc, restrictlist)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, lc)->clause,
					   inner->relid, &attrs);
	m = bms_next_member(attrs, -1);
	return m >= 0 && m + FirstLowInvalidHeapAttributeNumber < 0;
}

/*
 * What the key join costs: the outer side, then the requests for its
 * distinct keys, max_concurrency at a time and no faster than the rate
 * limit, then each outer row paired.  A block waits for its slowest
 * request before the next block is read, so each block that brings new
 * keys adds a round; as keys are asked for once, that is about one block
 * per block_rows distinct keys, not every block (a million outer rows over
 * 500 keys ask for them all in the first block).
 */
static void
cost_key_join(PlannerInfo *root, KeyJoinPath *kpath, Path *outer,
			  NimblePlanState *ps)
{
	Path	   *path = &kpath->cpath.path;
	double		keys = estimate_num_groups(root, list_make1(kpath->key_expr),
										   outer->rows, NULL, NULL);
	double		blocks = Max(ceil(outer->rows / kpath->block_rows), 1.0);
	double		rounds;

	keys = Max(Min(keys, outer->rows), 1.0);
	blocks = Min(blocks, ceil(keys / kpath->block_rows));
	rounds = ceil(keys / ps->server.max_concurrency) + blocks - 1;
	path->startup_cost = outer->startup_cost +
		nimble_requests_cost(ps, Min(keys, kpath->block_rows), 1);
	path->total_cost = outer->total_cost + nimble_requests_cost(ps, keys, rounds) +
		outer->rows * cpu_tuple_cost + path->rows * cpu_tuple_cost * 10;
}

/*
 * set_join_pathlist_hook: where the inner side is a nimble_fdw table joined
 * on an exact key condition, offer the key join beside the planner's own
 * paths; cost decides.
 */
static void
key_join_pathlist(PlannerInfo *root, RelOptInfo *joinrel, RelOptInfo *outerrel,
				  RelOptInfo *innerrel, JoinType jointype,
				  JoinPathExtraData *extra)
{
	NimblePlanState *ps;
	Path	   *outer = outerrel->cheapest_total_path;
	KeyJoinPath *kpath;
	RestrictInfo *key_clause = NULL;
	NimbleKeySet *keys = NULL;
	ListCell   *lc;

	if (prev_join_pathlist_hook)
		prev_join_pathlist_hook(root, joinrel, outerrel, innerrel, jointype, extra);
	if (!enable_key_join)
		return;
	if (jointype != JOIN_INNER && jointype != JOIN_LEFT &&
		jointype != JOIN_SEMI && jointype != JOIN_ANTI)
		return;
	if (!is_nimble_rel(innerrel) || !bms_is_empty(innerrel->lateral_relids) ||
		outer == NULL || outer->param_info != NULL)
		return;
	ps = (NimblePlanState *) innerrel->fdw_private;
	if (ps->table.resource->keyed == NULL || !ps->keyed_covers)
		return;
	/* what the join returns must be columns and expressions of its sides */
	if (contains_placeholder((Node *) joinrel->reltarget->exprs, NULL) ||
		uses_inner_system_column(joinrel, innerrel, extra->restrictlist))
		return;

	foreach(lc, extra->restrictlist)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		/* (17 and later call here for one-time conditions too) */
		if (rinfo->pseudoconstant)
			return;
		if (key_clause == NULL &&
			bms_is_subset(rinfo->clause_relids, joinrel->relids) &&
			(keys = nimble_join_keys(root, rinfo, innerrel)) != NULL &&
			bms_is_subset(pull_varnos(root, linitial(keys->exprs)), outerrel->relids))
			key_clause = rinfo;
	}
	if (key_clause == NULL)
		return;

	kpath = palloc0(sizeof(KeyJoinPath));
	kpath->cpath.path.type = T_CustomPath;
	kpath->cpath.path.pathtype = T_CustomScan;
	kpath->cpath.path.parent = joinrel;
	kpath->cpath.path.pathtarget = joinrel->reltarget;
	kpath->cpath.path.param_info = NULL;
	kpath->cpath.path.parallel_aware = false;
	kpath->cpath.path.parallel_safe = false;
	/* ExecScan projects: no Result node above it */
	kpath->cpath.flags = CUSTOMPATH_SUPPORT_PROJECTION;
	kpath->cpath.path.rows = joinrel->rows;
	/* the outer rows come out in their order, as from a nested loop */
	kpath->cpath.path.pathkeys = build_join_pathkeys(root, joinrel, jointype,
													 outer->pathkeys);
	kpath->cpath.custom_paths = list_make1(outer);
	kpath->cpath.methods = &key_join_path_methods;
	kpath->inner = innerrel;
	kpath->key_clause = key_clause;
	kpath->restrictlist = extra->restrictlist;
	kpath->key_expr = linitial(keys->exprs);
	kpath->jointype = jointype;
	kpath->block_rows = key_join_block_rows;
	cost_key_join(root, kpath, outer, ps);
	add_path(joinrel, (Path *) kpath);
}

/* ----------------------------------------------------------------
 *		The plan
 * ----------------------------------------------------------------
 */

/* The Var of column attno in vars, or NULL. */
static Var *
find_column_var(List *vars, AttrNumber attno)
{
	ListCell   *lc;

	foreach(lc, vars)
	{
		Var		   *var = lfirst(lc);

		if (var->varattno == attno)
			return var;
	}
	return NULL;
}

/* The columns of rel relid that node uses, added to vars (each once). */
static List *
add_rel_vars(List *vars, Node *node, Index relid)
{
	ListCell   *lc;

	foreach(lc, pull_var_clause(node, PVC_RECURSE_PLACEHOLDERS))
	{
		Var		   *var = lfirst(lc);

		if (IsA(var, Var) && var->varno == relid && var->varlevelsup == 0 &&
			find_column_var(vars, var->varattno) == NULL)
			vars = lappend(vars, var);
	}
	return vars;
}

#if PG_VERSION_NUM >= 160000
typedef struct NullingContext
{
	Index		relid;
	List	   *vars;			/* the scan tuple's Vars of relid */
} NullingContext;

static Node *
same_nullingrels_mutator(Node *node, NullingContext *context)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == context->relid &&
		((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = (Var *) copyObject(node);
		Var		   *column = find_column_var(context->vars, var->varattno);

		if (column)
			var->varnullingrels = bms_copy(column->varnullingrels);
		return (Node *) var;
	}
	return expression_tree_mutator(node, same_nullingrels_mutator, context);
}
#endif

/*
 * 16 and later mark a Var above an outer join as nulled by it, and setrefs
 * wants every reference to a column of the scan tuple marked as its entry
 * is.  The conditions below the join (the join's own, the inner table's)
 * see the inner columns unmarked, those above it marked; in the scan tuple
 * a column is one value, which this node nulls itself where the join
 * does.  So the conditions take the marks of the scan tuple's entry.
 */
static List *
with_scan_tuple_nullingrels(List *exprs, Index relid, List *vars)
{
#if PG_VERSION_NUM >= 160000
	NullingContext context = {relid, vars};

	return (List *) same_nullingrels_mutator((Node *) exprs, &context);
#else
	return exprs;
#endif
}

static Plan *
plan_key_join(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			  List *tlist, List *clauses, List *custom_plans)
{
	KeyJoinPath *kpath = (KeyJoinPath *) best_path;
	RelOptInfo *inner = kpath->inner;
	NimblePlanState *ps = (NimblePlanState *) inner->fdw_private;
	Plan	   *outer_plan = linitial(custom_plans);
	CustomScan *cscan = makeNode(CustomScan);
	List	   *joinquals;
	List	   *otherquals;
	List	   *inner_quals;
	List	   *inner_vars = NIL;
	List	   *scan_tlist = NIL;
	List	   *inner_attnos = NIL;
	NimblePlanPrivate priv;
	ListCell   *lc;
	AttrNumber	resno = 0;
	int			inner_pos = 0;
	bool		whole_row = false;
	int			m = -1;

	/* the key condition is the join itself; the rest is checked here */
	Assert(clauses == NIL);
	clauses = list_delete_ptr(list_copy(kpath->restrictlist), kpath->key_clause);
	extract_actual_join_clauses(clauses, rel->relids, &joinquals, &otherquals);
	inner_quals = extract_actual_clauses(inner->baserestrictinfo, false);

	/* the scan tuple: the outer plan's columns, then the inner's used */
	foreach(lc, outer_plan->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry(copyObject(tle->expr), ++resno, NULL, false));
	}
	/*
	 * (tlist is empty when the planner means to put a projection of its own
	 * on the node: the join's target is what that projection may use)
	 */
	inner_vars = add_rel_vars(inner_vars, (Node *) best_path->path.pathtarget->exprs,
							  inner->relid);
	inner_vars = add_rel_vars(inner_vars, (Node *) tlist, inner->relid);
	inner_vars = add_rel_vars(inner_vars, (Node *) otherquals, inner->relid);
	inner_vars = add_rel_vars(inner_vars, (Node *) joinquals, inner->relid);
	inner_vars = add_rel_vars(inner_vars, (Node *) inner_quals, inner->relid);
	otherquals = with_scan_tuple_nullingrels(otherquals, inner->relid, inner_vars);
	joinquals = with_scan_tuple_nullingrels(joinquals, inner->relid, inner_vars);
	inner_quals = with_scan_tuple_nullingrels(inner_quals, inner->relid, inner_vars);
	foreach(lc, inner_vars)
	{
		Var		   *var = lfirst(lc);

		/* key_join_pathlist saw to it that there are no system columns */
		if (var->varattno < 0)
			elog(ERROR, "nimble_fdw: the key join cannot return system columns");
		if (var->varattno == 0)
			whole_row = true;
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) copyObject(var), ++resno, NULL, false));
		inner_attnos = lappend_int(inner_attnos, var->varattno);
	}

	/* the inner table's scan: keyed, for the columns the join uses */
	memset(&priv, 0, sizeof(priv));
	priv.route = NIMBLE_ROUTE_KEYED;
	if (whole_row)
	{
		/* the whole row: every column */
		RangeTblEntry *rte = planner_rt_fetch(inner->relid, root);
		Relation	table = table_open(rte->relid, NoLock);

		for (int i = 0; i < RelationGetDescr(table)->natts; i++)
		{
			if (!TupleDescAttr(RelationGetDescr(table), i)->attisdropped)
				priv.retrieved_attrs = lappend_int(priv.retrieved_attrs, i + 1);
		}
		table_close(table, NoLock);
	}
	else
	{
		foreach(lc, inner_attnos)
			priv.retrieved_attrs = list_append_unique_int(priv.retrieved_attrs,
														  lfirst_int(lc));
	}
	if (!list_member_int(priv.retrieved_attrs, ps->key_attno))
		priv.retrieved_attrs = lappend_int(priv.retrieved_attrs, ps->key_attno);

	/* where the inner table is among the join's range table indexes */
	while ((m = bms_next_member(rel->relids, m)) >= 0 && m < (int) inner->relid)
		inner_pos++;
	priv.key_column = pstrdup(ps->table.resource->key_column);
	priv.key_attno = ps->key_attno;
	priv.key_mode = NIMBLE_KEYS_EXACT;

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = otherquals;
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = custom_plans;
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_relids = bms_copy(rel->relids);
	cscan->custom_exprs = list_make3(copyObject(kpath->key_expr), joinquals,
									 inner_quals);
	cscan->custom_private = list_make5(makeInteger(inner_pos),
									   makeInteger(kpath->jointype),
									   makeInteger((int) kpath->block_rows),
									   makeInteger(list_length(outer_plan->targetlist)),
									   inner_attnos);
	cscan->custom_private = lappend(cscan->custom_private,
									nimble_private_to_list(&priv));
	Assert(list_length(cscan->custom_private) == KJ_COUNT);
	cscan->methods = &nimble_key_join_scan_methods;
	return &cscan->scan.plan;
}

/*
 * Offer the key join to the planner, and say how to make and read its
 * plans; its settings.  Called from _PG_init.
 */
void
nimble_key_join_init(void)
{
	DefineCustomBoolVariable("nimble_fdw.enable_key_join",
							 "Lets the planner join a nimble_fdw table on its key by asking for many keys at once.",
							 "Off: joins on the key are nested loops (one request per outer row) or hash joins over a full scan.",
							 &enable_key_join, true, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("nimble_fdw.key_join_block_rows",
							"Outer rows a key join reads before asking for their keys.",
							"A block is also no larger than work_mem.",
							&key_join_block_rows, 1000, 1, 1000000, PGC_USERSET, 0,
							NULL, NULL, NULL);
	RegisterCustomScanMethods(&nimble_key_join_scan_methods);
	prev_join_pathlist_hook = set_join_pathlist_hook;
	set_join_pathlist_hook = key_join_pathlist;
}
