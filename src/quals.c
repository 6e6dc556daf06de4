/*-------------------------------------------------------------------------
 *
 * quals.c
 *		  Planning of nimble_fdw scans: batch_id keys, routes, paths, costs.
 *
 * A condition on the key column (batch_id) in any form a user writes --
 * "= const", IN (...), = ANY(array), a parameter, an OR of those, or a join
 * clause -- becomes the set of keys the scan asks the keyed endpoint for.
 * Every condition, pushed or not, is also checked locally: rechecking is
 * cheap, a wrong row is not.
 *
 * The cost model counts what a scan really waits for: HTTP requests, of
 * which max_concurrency run at once within one scan, and the list pages
 * walked one after the other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/table.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "nimble_fdw.h"

/*
 * What one HTTP round trip costs, in planner units: about as much as
 * processing 100,000 tuples locally (a 20-50 ms request against 0.2-0.5 us
 * of CPU per tuple).
 */
#define NIMBLE_REQUEST_COST 1000.0
#define NIMBLE_REQUEST_SECONDS 0.03	/* the round trip that cost stands for */

/* What the planner assumes before it has seen the API. */
#define NIMBLE_DEFAULT_LIST_ITEMS 100.0
#define NIMBLE_DEFAULT_ROWS_PER_KEY 100.0
#define NIMBLE_DEFAULT_PAGE_SIZE 100.0
#define NIMBLE_DEFAULT_ARRAY_KEYS 10.0

/* ----------------------------------------------------------------
 *		Keys
 * ----------------------------------------------------------------
 */

static bool
is_key_var(Node *node, Index relid, AttrNumber key_attno)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Var) &&
		((Var *) node)->varno == relid &&
		((Var *) node)->varattno == key_attno &&
		((Var *) node)->varlevelsup == 0;
}

/*
 * An operator that the API's exact match on an id can stand in for: "=",
 * hashable (so a true equality) and, for text, a deterministic collation.
 */
static bool
is_key_equality(Oid opno, Oid lefttype, Oid inputcollid)
{
	char	   *name = get_opname(opno);

	if (name == NULL || strcmp(name, "=") != 0)
		return false;
	if (!op_hashjoinable(opno, lefttype))
		return false;
	if (OidIsValid(inputcollid) && !get_collation_isdeterministic(inputcollid))
		return false;
	return true;
}

/*
 * May "other" give the keys?  For a restriction, it must be computable
 * before the scan (constants, parameters, stable functions); for a join
 * clause, it may use the other relations' columns, never ours.
 */
static bool
is_key_source(PlannerInfo *root, Node *other, Index relid, bool join)
{
	if (contain_volatile_functions(other))
		return false;
	if (join)
		return !bms_is_member(relid, pull_varnos(root, other));
	return !contain_var_clause(other);
}

static double
array_key_count(Node *array)
{
	if (IsA(array, Const))
	{
		Const	   *c = (Const *) array;

		if (c->constisnull)
			return 0;
		return ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(c->constvalue)),
							  ARR_DIMS(DatumGetArrayTypeP(c->constvalue)));
	}
	if (IsA(array, ArrayExpr))
		return list_length(((ArrayExpr *) array)->elements);
	return NIMBLE_DEFAULT_ARRAY_KEYS;
}

/* Add the keys of clause to keys; false if it is not a key condition. */
static bool
extract_keys(PlannerInfo *root, Expr *clause, Index relid,
			 AttrNumber key_attno, bool join, NimbleKeySet *keys)
{
	if (IsA(clause, OpExpr))
	{
		OpExpr	   *op = (OpExpr *) clause;
		Node	   *left;
		Node	   *right;
		Node	   *other;

		if (list_length(op->args) != 2)
			return false;
		left = linitial(op->args);
		right = lsecond(op->args);
		if (is_key_var(left, relid, key_attno))
			other = right;
		else if (is_key_var(right, relid, key_attno))
			other = left;
		else
			return false;
		if (!is_key_equality(op->opno, exprType(left), op->inputcollid) ||
			!is_key_source(root, other, relid, join))
			return false;
		keys->exprs = lappend(keys->exprs, other);
		keys->is_array = lappend_int(keys->is_array, 0);
		keys->nkeys += 1;
		return true;
	}
	if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
		Node	   *array = lsecond(saop->args);

		if (!saop->useOr ||
			!is_key_var(linitial(saop->args), relid, key_attno) ||
			!is_key_equality(saop->opno, exprType(linitial(saop->args)),
							 saop->inputcollid) ||
			!is_key_source(root, array, relid, join))
			return false;
		keys->exprs = lappend(keys->exprs, array);
		keys->is_array = lappend_int(keys->is_array, 1);
		keys->nkeys += array_key_count(array);
		return true;
	}
	if (is_orclause(clause))
	{
		/* batch_id = 'a' OR batch_id IN ('b', 'c'): all arms must be keys */
		NimbleKeySet arms;
		ListCell   *lc;

		memset(&arms, 0, sizeof(arms));
		foreach(lc, ((BoolExpr *) clause)->args)
		{
			if (!extract_keys(root, lfirst(lc), relid, key_attno, join, &arms))
				return false;
		}
		keys->exprs = list_concat(keys->exprs, arms.exprs);
		keys->is_array = list_concat(keys->is_array, arms.is_array);
		keys->nkeys += arms.nkeys;
		return true;
	}
	return false;
}

/* The key set of one RestrictInfo, or NULL. */
static NimbleKeySet *
keys_of_clause(PlannerInfo *root, RestrictInfo *rinfo, Index relid,
			   AttrNumber key_attno, bool join)
{
	NimbleKeySet *keys = palloc0(sizeof(NimbleKeySet));

	if (!extract_keys(root, rinfo->clause, relid, key_attno, join, keys))
	{
		pfree(keys);
		return NULL;
	}
	keys->clauses = list_make1(rinfo);
	return keys;
}

/* ----------------------------------------------------------------
 *		Relation size
 * ----------------------------------------------------------------
 */

static AttrNumber
find_key_column(Oid relid, const NimbleResourceDef *res)
{
	AttrNumber	attnum = get_attnum(relid, res->key_column);

	/* a batch_id column mapped elsewhere is not the key */
	if (attnum != InvalidAttrNumber && nimble_get_column_field(relid, attnum) != NULL)
		return InvalidAttrNumber;
	return attnum;
}

/* Is every column the query reads available on route? */
static bool
route_covers(NimblePlanState *ps, TupleDesc tupdesc, NimbleRoute route,
			 bool *needs_extra)
{
	bool		covers = true;

	*needs_extra = false;
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		NimbleSource source;

		if (attr->attisdropped ||
			!bms_is_member(attr->attnum - FirstLowInvalidHeapAttributeNumber,
						   ps->attrs_used))
			continue;
		(void) nimble_column_path(ps->table.resource, NameStr(attr->attname),
								  nimble_get_column_field(ps->table.relid, attr->attnum),
								  route, &source);
		if (source == NIMBLE_SRC_NONE)
			covers = false;
		else if (source == NIMBLE_SRC_EXTRA)
			*needs_extra = true;
	}
	return covers;
}

void
nimble_get_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	NimblePlanState *ps = palloc0(sizeof(NimblePlanState));
	ForeignTable *table = GetForeignTable(foreigntableid);
	Relation	rel;
	ListCell   *lc;
	bool		ignored;
	Selectivity sel;
	const NimbleResourceDef *res;
	const NimbleEndpoint *keyed;

	baserel->fdw_private = ps;
	nimble_get_table_options(foreigntableid, &ps->table);
	res = ps->table.resource;
	nimble_get_server_options(GetForeignServer(table->serverid), &ps->server);
	ps->key_attno = find_key_column(foreigntableid, ps->table.resource);

	/* the columns the query reads: output and local conditions */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &ps->attrs_used);
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		pull_varattnos((Node *) rinfo->clause, baserel->relid, &ps->attrs_used);
	}

	rel = table_open(foreigntableid, NoLock);
	/* a whole-row reference reads every column */
	if (bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, ps->attrs_used))
	{
		for (int i = 1; i <= RelationGetDescr(rel)->natts; i++)
			ps->attrs_used = bms_add_member(ps->attrs_used,
											i - FirstLowInvalidHeapAttributeNumber);
	}
	ps->keyed_covers = ps->table.resource->keyed_endpoint >= 0 &&
		route_covers(ps, RelationGetDescr(rel), NIMBLE_ROUTE_KEYED, &ignored);
	if (ps->table.resource->list_rows)
		(void) route_covers(ps, RelationGetDescr(rel), NIMBLE_ROUTE_LIST_ROWS,
							&ps->needs_extra);
	table_close(rel, NoLock);

	/* the most selective key condition is pushed; all are rechecked */
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		NimbleKeySet *keys = NULL;

		if (ps->key_attno != InvalidAttrNumber)
			keys = keys_of_clause(root, rinfo, baserel->relid, ps->key_attno, false);
		if (keys && (ps->keys == NULL || keys->nkeys < ps->keys->nkeys))
			ps->keys = keys;
		ps->local_conds = lappend(ps->local_conds, rinfo);
	}

	/* what earlier scans saw, else a guess */
	ps->est_list_items = NIMBLE_DEFAULT_LIST_ITEMS;
	if (res->list_endpoint >= 0)
		nimble_learned_list_total(ps->table.serverid,
								  &ps->table.api->endpoints[res->list_endpoint],
								  &ps->est_list_items);
	/* one row per key where a key's response is one object */
	keyed = res->keyed_endpoint >= 0 ? &ps->table.api->endpoints[res->keyed_endpoint] : NULL;
	ps->est_rows_per_key = res->list_rows || keyed == NULL ||
		keyed->rows[0] == '\0' || keyed->rows_single
		? 1.0 : NIMBLE_DEFAULT_ROWS_PER_KEY;
	nimble_learned_rows_per_key(ps->table.serverid, ps->table.resource->name,
								&ps->est_rows_per_key);

	/* rows: per key times keys, or the whole list, then local filters */
	if (ps->keys)
		baserel->tuples = Max(ps->keys->nkeys, 1.0) * ps->est_rows_per_key;
	else
		baserel->tuples = ps->est_list_items * ps->est_rows_per_key;
	sel = clauselist_selectivity(root, extract_actual_clauses(ps->local_conds, false),
								 baserel->relid, JOIN_INNER, NULL);
	if (ps->keys)
		sel = 1.0;				/* the key condition is what selected them */
	baserel->rows = clamp_row_est(baserel->tuples * sel);
}

/* ----------------------------------------------------------------
 *		Paths and costs
 * ----------------------------------------------------------------
 */

static NimbleRoute
choose_route(NimblePlanState *ps, bool have_keys)
{
	const NimbleResourceDef *res = ps->table.resource;

	if (have_keys && res->keyed_endpoint >= 0 && ps->keyed_covers)
		return NIMBLE_ROUTE_KEYED;
	if (res->list_rows)
		return NIMBLE_ROUTE_LIST_ROWS;
	return have_keys ? NIMBLE_ROUTE_KEYED : NIMBLE_ROUTE_LIST_KEYED;
}

/*
 * Cost of one execution of the scan: list pages one after another, then
 * per-unit requests max_concurrency at a time, no faster than the rate
 * limit allows.
 */
static void
estimate_cost(NimblePlanState *ps, NimbleRoute route, double nkeys,
			  double rows, Cost *startup, Cost *total)
{
	double		page_size = ps->server.page_size > 0 ? ps->server.page_size
		: NIMBLE_DEFAULT_PAGE_SIZE;
	double		list_pages = ceil(ps->est_list_items / page_size);
	double		unit_requests = 0;
	double		rounds;

	switch (route)
	{
		case NIMBLE_ROUTE_KEYED:
			list_pages = 0;
			unit_requests = nkeys;
			break;
		case NIMBLE_ROUTE_LIST_KEYED:
			unit_requests = ps->est_list_items;
			break;
		case NIMBLE_ROUTE_LIST_ROWS:
			unit_requests = ps->needs_extra ?
				(nkeys > 0 ? nkeys : ps->est_list_items) : 0;
			break;
	}
	rounds = list_pages + ceil(unit_requests / ps->server.max_concurrency);

	/*
	 * Under max_requests_per_second, n requests take at least n / rate
	 * seconds however many run at once: a full scan of many batches is then
	 * slower than concurrency alone says.
	 */
	if (ps->server.max_requests_per_second > 0)
		rounds = Max(rounds, (list_pages + unit_requests) /
					 (ps->server.max_requests_per_second * NIMBLE_REQUEST_SECONDS));
	*startup = NIMBLE_REQUEST_COST;
	*total = Max(rounds, 1.0) * NIMBLE_REQUEST_COST + rows * cpu_tuple_cost * 10;
}

/* Is em our key column?  (generate_implied_equalities_for_column callback) */
static bool
ec_member_is_key(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				 EquivalenceMember *em, void *arg)
{
	NimblePlanState *ps = (NimblePlanState *) arg;

	return is_key_var((Node *) em->em_expr, rel->relid, ps->key_attno);
}

/* Join clauses on the key column: explicit ones and implied equalities. */
static List *
key_join_clauses(PlannerInfo *root, RelOptInfo *baserel, NimblePlanState *ps)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		if (join_clause_is_movable_to(rinfo, baserel))
			result = lappend(result, rinfo);
	}
	if (baserel->has_eclass_joins)
		result = list_concat(result,
							 generate_implied_equalities_for_column(root, baserel,
																	ec_member_is_key, ps,
																	baserel->lateral_referencers));
	return result;
}

void
nimble_get_paths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	NimblePlanState *ps = (NimblePlanState *) baserel->fdw_private;
	NimbleRoute route = choose_route(ps, ps->keys != NULL);
	Cost		startup;
	Cost		total;
	ListCell   *lc;
	List	   *done_outer = NIL;

	estimate_cost(ps, route, ps->keys ? ps->keys->nkeys : 0, baserel->rows,
				  &startup, &total);

	/*
	 * A resource without a list needs keys.  Without a key condition the
	 * plain path stays, priced out of reach, so that a parameterized path
	 * wins wherever a join can give keys; nimble_get_plan refuses it if it
	 * is chosen all the same, with an error that says what to add.
	 */
	add_path(baserel, (Path *)
			 nimble_create_foreignscan_path(root, baserel, baserel->rows,
											ps->keys == NULL &&
											ps->table.resource->list_endpoint < 0,
											startup, total,
											baserel->lateral_relids));

	if (ps->key_attno == InvalidAttrNumber)
		return;

	/*
	 * One parameterized path per set of outer relations that a key join
	 * clause needs: a nested loop then asks for one key per outer row.
	 */
	foreach(lc, key_join_clauses(root, baserel, ps))
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		NimbleKeySet *keys = keys_of_clause(root, rinfo, baserel->relid,
											ps->key_attno, true);
		Relids		required_outer;
		ParamPathInfo *param_info;
		ListCell   *lc2;
		bool		seen = false;

		if (keys == NULL)
			continue;
		required_outer = bms_union(rinfo->clause_relids, baserel->lateral_relids);
		required_outer = bms_del_member(required_outer, baserel->relid);
		if (bms_is_empty(required_outer))
			continue;
		foreach(lc2, done_outer)
		{
			if (bms_equal(lfirst(lc2), required_outer))
				seen = true;
		}
		if (seen)
			continue;
		done_outer = lappend(done_outer, required_outer);

		param_info = get_baserel_parampathinfo(root, baserel, required_outer);
		route = choose_route(ps, true);
		estimate_cost(ps, route, 1, ps->est_rows_per_key, &startup, &total);
		add_path(baserel, (Path *)
				 nimble_create_foreignscan_path(root, baserel,
												param_info->ppi_rows, false,
												startup, total,
												required_outer));
	}
}

/* ----------------------------------------------------------------
 *		Plan
 * ----------------------------------------------------------------
 */

static List *
retrieved_attrs(NimblePlanState *ps)
{
	List	   *result = NIL;
	int			i = -1;

	while ((i = bms_next_member(ps->attrs_used, i)) >= 0)
	{
		AttrNumber	attnum = i + FirstLowInvalidHeapAttributeNumber;

		if (attnum > 0)
			result = lappend_int(result, attnum);
	}
	return result;
}

/*
 * The most rows the scan will be asked for, or 0 when it may be asked for
 * all.  The planner sets limit_tuples from a constant LIMIT (plus OFFSET)
 * and leaves it unset when aggregation, grouping, DISTINCT, window
 * functions or set-returning functions stand between the scan and the
 * Limit; a sort, a join or a filter would need more rows than the limit,
 * so those are ruled out here.
 */
static int
row_bound(PlannerInfo *root, RelOptInfo *baserel)
{
	if (root->limit_tuples <= 0 || root->limit_tuples > PG_INT32_MAX)
		return 0;
	if (root->parse->sortClause != NIL || baserel->baserestrictinfo != NIL)
		return 0;
	if (baserel->reloptkind != RELOPT_BASEREL ||
		bms_membership(root->all_baserels) != BMS_SINGLETON)
		return 0;
	return (int) root->limit_tuples;
}

ForeignScan *
nimble_get_plan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				ForeignPath *best_path, List *tlist, List *scan_clauses,
				Plan *outer_plan)
{
	NimblePlanState *ps = (NimblePlanState *) baserel->fdw_private;
	NimbleKeySet *keys = ps->keys;
	bool		parameterized = false;
	NimbleRoute route;
	List	   *fdw_private;

	/* a parameterized path takes its keys from its join clause */
	if (best_path->path.param_info)
	{
		ListCell   *lc;

		foreach(lc, best_path->path.param_info->ppi_clauses)
		{
			NimbleKeySet *jkeys = keys_of_clause(root, lfirst_node(RestrictInfo, lc),
												 baserel->relid, ps->key_attno, true);

			if (jkeys)
			{
				keys = jkeys;
				parameterized = true;
				break;
			}
		}
	}
	if (keys == NULL && ps->table.resource->list_endpoint < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_DYNAMIC_PARAMETER_VALUE_NEEDED),
				 errmsg("a query on foreign table \"%s\" needs a condition on %s",
						get_rel_name(foreigntableid), ps->table.resource->key_column),
				 errdetail("The %s API cannot list %s: each row is fetched by its %s.",
						   ps->table.api->name, ps->table.resource->name,
						   ps->table.resource->key_column),
				 errhint("Add WHERE %s = '...' or %s = ANY(...), or join on %s with a table that has it.",
						 ps->table.resource->key_column, ps->table.resource->key_column,
						 ps->table.resource->key_column)));
	route = choose_route(ps, keys != NULL);

	fdw_private = list_make5(makeInteger(route),
							 keys ? keys->is_array : NIL,
							 retrieved_attrs(ps),
							 makeInteger(ps->needs_extra ? 1 : 0),
							 makeString(pstrdup(ps->table.resource->key_column)));
	fdw_private = lappend(fdw_private, makeInteger(parameterized ? 1 : 0));
	fdw_private = lappend(fdw_private,
						  makeInteger(parameterized ? 0 : row_bound(root, baserel)));

	/* every condition is checked locally too, the pushed ones included */
	return make_foreignscan(tlist,
							extract_actual_clauses(scan_clauses, false),
							baserel->relid,
							keys ? keys->exprs : NIL,
							fdw_private,
							NIL, NIL, outer_plan);
}
