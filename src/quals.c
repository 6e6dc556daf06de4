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
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/builtins.h"
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

/* The key column's Var under any relabeling (varchar as text), or NULL. */
static Var *
key_var(Node *node, Index relid, AttrNumber key_attno)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node && IsA(node, Var) &&
		((Var *) node)->varno == relid &&
		((Var *) node)->varattno == key_attno &&
		((Var *) node)->varlevelsup == 0)
		return (Var *) node;
	return NULL;
}

static bool
is_key_var(Node *node, Index relid, AttrNumber key_attno)
{
	return key_var(node, relid, key_attno) != NULL;
}

/*
 * How a "key = value" condition can be pushed (keys.c): exactly, where the
 * operator is text's "=" on a text or varchar column without a length (or
 * a domain over them) under a deterministic collation: then the column's
 * value is the API's id as it came, byte for byte, equal values are equal
 * texts, and asking for the value's text is the same test.  Otherwise, for
 * any other "=" that can be hashed (a true equality: citext, char(n),
 * varchar(n), which drops trailing spaces beyond n, name, uuid, a
 * nondeterministic collation), typed, in the list walk.  False, with
 * *why, where it cannot be pushed at all.
 */
static bool
key_equality_mode(Oid opno, Var *var, Oid inputcollid, NimbleKeyMode *mode,
				  const char **why)
{
	char	   *name = get_opname(opno);
	int32		typmod = var->vartypmod;
	Oid			base = getBaseTypeAndTypmod(var->vartype, &typmod);

	if (name == NULL || strcmp(name, "=") != 0)
		return false;			/* not an equality: nothing to tell */
	if (!op_hashjoinable(opno, var->vartype))
	{
		*why = psprintf("the = of type %s cannot be hashed",
						format_type_with_typemod(var->vartype, var->vartypmod));
		return false;
	}
	if (opno == TextEqualOperator && typmod < 0 &&
		(base == TEXTOID || base == VARCHAROID) &&
		(!OidIsValid(inputcollid) || get_collation_isdeterministic(inputcollid)))
		*mode = NIMBLE_KEYS_EXACT;
	else
		*mode = NIMBLE_KEYS_TYPED;
	return true;
}

/*
 * May "other" give the keys?  For a restriction, it must be computable
 * before the scan (constants, parameters, stable functions); for a join
 * clause, it may use the other relations' columns, never ours.
 */
static bool
is_key_source(PlannerInfo *root, Node *other, Index relid, bool join,
			  const char **why)
{
	if (contain_volatile_functions(other))
	{
		*why = "the value is volatile";
		return false;
	}
	if (join)
		return !bms_is_member(relid, pull_varnos(root, other));
	return !contain_var_clause(other);
}

/* One more key expression for keys, of mode; false where the modes mix. */
static bool
add_key_expr(NimbleKeySet *keys, Node *expr, bool is_array, double n,
			 NimbleKeyMode mode, Oid opno, Oid collation)
{
	if (keys->exprs != NIL &&
		(keys->mode != mode || keys->opno != opno || keys->collation != collation))
		return false;
	keys->exprs = lappend(keys->exprs, expr);
	keys->is_array = lappend_int(keys->is_array, is_array ? 1 : 0);
	keys->nkeys += n;
	keys->mode = mode;
	keys->opno = opno;
	keys->collation = collation;
	return true;
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

/*
 * Add the keys of clause to keys; false if it is not a key condition (with
 * *why set where it is one in form but cannot be pushed).  Every arm of an
 * OR, and every clause of a set, must use the same "=" the same way.
 */
static bool
extract_keys(PlannerInfo *root, Expr *clause, Index relid,
			 AttrNumber key_attno, bool join, NimbleKeySet *keys,
			 const char **why)
{
	NimbleKeyMode mode;

	if (IsA(clause, OpExpr))
	{
		OpExpr	   *op = (OpExpr *) clause;
		Var		   *var;
		Node	   *other;

		if (list_length(op->args) != 2)
			return false;
		if ((var = key_var(linitial(op->args), relid, key_attno)) != NULL)
			other = lsecond(op->args);
		else if ((var = key_var(lsecond(op->args), relid, key_attno)) != NULL)
			other = linitial(op->args);
		else
			return false;
		if (!key_equality_mode(op->opno, var, op->inputcollid, &mode, why) ||
			!is_key_source(root, other, relid, join, why))
			return false;
		return add_key_expr(keys, other, false, 1, mode, op->opno, op->inputcollid);
	}
	if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
		Node	   *array = lsecond(saop->args);
		Var		   *var = key_var(linitial(saop->args), relid, key_attno);

		if (!saop->useOr || var == NULL ||
			!key_equality_mode(saop->opno, var, saop->inputcollid, &mode, why) ||
			!is_key_source(root, array, relid, join, why))
			return false;
		return add_key_expr(keys, array, true, array_key_count(array), mode,
							saop->opno, saop->inputcollid);
	}
	if (is_orclause(clause))
	{
		/* batch_id = 'a' OR batch_id IN ('b', 'c'): all arms must be keys */
		ListCell   *lc;

		foreach(lc, ((BoolExpr *) clause)->args)
		{
			if (!extract_keys(root, lfirst(lc), relid, key_attno, join, keys, why))
				return false;
		}
		return true;
	}
	return false;
}

/* The key set of one RestrictInfo, or NULL (and *why, as extract_keys). */
static NimbleKeySet *
keys_of_clause(PlannerInfo *root, RestrictInfo *rinfo, Index relid,
			   AttrNumber key_attno, bool join, const char **why)
{
	NimbleKeySet *keys = palloc0(sizeof(NimbleKeySet));

	if (!extract_keys(root, rinfo->clause, relid, key_attno, join, keys, why))
	{
		pfree(keys);
		return NULL;
	}
	keys->clauses = list_make1(rinfo);
	return keys;
}

/* Is a better than b to push: exact before typed, then fewer keys. */
static bool
better_keys(const NimbleKeySet *a, const NimbleKeySet *b)
{
	if (b == NULL)
		return true;
	if (a->mode != b->mode)
		return a->mode == NIMBLE_KEYS_EXACT;
	return a->nkeys < b->nkeys;
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

/*
 * GetForeignRelSize: read the table's and server's options, find the key
 * conditions (all kept as local conditions too), and estimate the rows
 * from the keys, or the list's size as learned or guessed.
 */
void
nimble_get_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	NimblePlanState *ps = palloc0(sizeof(NimblePlanState));
	Relation	rel;
	ListCell   *lc;
	bool		ignored;
	Selectivity sel;
	const NimbleResourceDef *res;
	const NimbleEndpoint *keyed;

	baserel->fdw_private = ps;
	(void) nimble_get_table_options(foreigntableid, &ps->table, &ps->server);
	res = ps->table.resource;
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
	ps->keyed_covers = ps->table.resource->keyed != NULL &&
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
		const char *why = NULL;

		if (ps->key_attno != InvalidAttrNumber)
			keys = keys_of_clause(root, rinfo, baserel->relid, ps->key_attno,
								  false, &why);
		if (keys && better_keys(keys, ps->keys))
			ps->keys = keys;
		if (why && ps->unpushed == NULL)
			ps->unpushed = why;
		ps->local_conds = lappend(ps->local_conds, rinfo);
	}
	/* typed keys are matched in a list walk: without a list, nowhere */
	if (ps->keys && ps->keys->mode == NIMBLE_KEYS_TYPED &&
		res->list == NULL)
	{
		Oid			keytype;
		int32		keytypmod;
		Oid			keycoll;

		get_atttypetypmodcoll(foreigntableid, ps->key_attno, &keytype,
							  &keytypmod, &keycoll);
		ps->unpushed = psprintf("the = of %s is not the API's exact match on ids, and the API cannot list %s",
								format_type_with_typemod(keytype, keytypmod),
								res->name);
		ps->keys = NULL;
	}

	/*
	 * The list's size and the rows per key: what ANALYZE stored, else what
	 * earlier scans of this backend saw, else a guess.  ANALYZE stores the
	 * rows as reltuples and the list's units as relpages (analyze.c);
	 * reltuples is -1 until the first ANALYZE.
	 */
	ps->est_list_items = NIMBLE_DEFAULT_LIST_ITEMS;
	if (res->list != NULL)
		nimble_learned_list_total(ps->table.serverid,
								  res->list,
								  &ps->est_list_items);
	/* one row per key where a key's response is one object */
	keyed = res->keyed;
	ps->est_rows_per_key = res->list_rows || keyed == NULL ||
		keyed->rows[0] == '\0' || keyed->rows_single
		? 1.0 : NIMBLE_DEFAULT_ROWS_PER_KEY;
	nimble_learned_rows_per_key(ps->table.serverid, ps->table.resource->name,
								&ps->est_rows_per_key);
	if (baserel->tuples >= 0 && res->list != NULL)
	{
		ps->est_list_items = baserel->pages;
		if (baserel->pages > 0 && !res->list_rows)
			ps->est_rows_per_key = baserel->tuples / baserel->pages;
	}

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

/*
 * The route for keys (NULL: none): exact keys go to the keyed endpoint
 * where it serves the columns; typed keys, and no keys, walk the list.
 */
static NimbleRoute
choose_route(NimblePlanState *ps, const NimbleKeySet *keys)
{
	const NimbleResourceDef *res = ps->table.resource;
	bool		exact = keys && keys->mode == NIMBLE_KEYS_EXACT;

	if (exact && res->keyed && ps->keyed_covers)
		return NIMBLE_ROUTE_KEYED;
	if (res->list_rows)
		return NIMBLE_ROUTE_LIST_ROWS;
	return exact ? NIMBLE_ROUTE_KEYED : NIMBLE_ROUTE_LIST_KEYED;
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
	/* an empty list is one page too */
	double		list_pages = Max(ceil(ps->est_list_items / page_size), 1);
	double		unit_requests = 0;
	double		rounds;

	switch (route)
	{
		case NIMBLE_ROUTE_KEYED:
			list_pages = 0;
			unit_requests = nkeys;
			break;
		case NIMBLE_ROUTE_LIST_KEYED:
			/* with typed keys, a request per listed id that matches */
			unit_requests = nkeys > 0 ? Min(nkeys, ps->est_list_items)
				: ps->est_list_items;
			break;
		case NIMBLE_ROUTE_LIST_ROWS:
			unit_requests = ps->needs_extra ?
				(nkeys > 0 ? nkeys : ps->est_list_items) : 0;
			break;
	}
	rounds = list_pages + ceil(unit_requests / ps->server.max_concurrency);
	*startup = NIMBLE_REQUEST_COST;
	*total = nimble_requests_cost(ps, list_pages + unit_requests, rounds) +
		rows * cpu_tuple_cost * 10;
}

/*
 * What requests of a scan of ps's table cost: rounds of requests one after
 * another (each round max_concurrency requests at once), and no less than
 * the rate limit lets that many requests take however many run at once:
 * beyond the API's documented window of L requests in W seconds, each L
 * more take W; under max_requests_per_second, n take n / rate seconds.
 * (What an API's headers taught a backend is not planned with: plans do
 * not change with the budget's state.)  For the scan's paths and the key
 * join's.
 */
Cost
nimble_requests_cost(const NimblePlanState *ps, double requests, double rounds)
{
	const NimbleRateLimitDef *documented = &ps->server.api->rate_limit;
	double		seconds = 0;

	if (documented->requests > 0 && requests > documented->requests &&
		ps->server.max_requests_per_second != 0)
		seconds = (requests - documented->requests) * documented->window_s /
			documented->requests;
	if (ps->server.max_requests_per_second > 0)
		seconds = Max(seconds, requests / ps->server.max_requests_per_second);
	rounds = Max(rounds, seconds / NIMBLE_REQUEST_SECONDS);
	return Max(rounds, 1.0) * NIMBLE_REQUEST_COST;
}

/*
 * The exact keys a join clause gives baserel's key column from the other
 * side, or NULL: for the key join, which asks for them as a keyed scan
 * does.
 */
NimbleKeySet *
nimble_join_keys(PlannerInfo *root, RestrictInfo *rinfo, RelOptInfo *baserel)
{
	NimblePlanState *ps = (NimblePlanState *) baserel->fdw_private;
	const char *why = NULL;
	NimbleKeySet *keys;

	if (ps->key_attno == InvalidAttrNumber)
		return NULL;
	keys = keys_of_clause(root, rinfo, baserel->relid, ps->key_attno, true, &why);
	if (keys == NULL || keys->mode != NIMBLE_KEYS_EXACT ||
		list_length(keys->exprs) != 1 || linitial_int(keys->is_array))
		return NULL;
	return keys;
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

/*
 * GetForeignPaths: the plain path (the route the keys allow), and one
 * parameterized path per set of outer relations that an exact key join
 * clause needs, costed in requests, rounds of max_concurrency and the
 * rate limit.
 */
void
nimble_get_paths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	NimblePlanState *ps = (NimblePlanState *) baserel->fdw_private;
	NimbleRoute route = choose_route(ps, ps->keys);
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
											ps->table.resource->list == NULL,
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
		const char *why = NULL;
		NimbleKeySet *keys = keys_of_clause(root, rinfo, baserel->relid,
											ps->key_attno, true, &why);
		Relids		required_outer;
		ParamPathInfo *param_info;
		ListCell   *lc2;
		bool		seen = false;

		/* a typed key per outer row would walk the whole list each time */
		if (keys == NULL || keys->mode != NIMBLE_KEYS_EXACT)
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
		route = choose_route(ps, keys);
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

/*
 * GetForeignPlan: the keys of the chosen path as fdw_exprs, and what the
 * executor needs to know as fdw_private (nimble_private_to_list); every
 * condition stays in the plan's qual, to be checked locally.  A resource
 * that cannot be listed and got no keys is refused here, with a hint.
 */
ForeignScan *
nimble_get_plan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				ForeignPath *best_path, List *tlist, List *scan_clauses,
				Plan *outer_plan)
{
	NimblePlanState *ps = (NimblePlanState *) baserel->fdw_private;
	const NimbleResourceDef *res = ps->table.resource;
	NimbleKeySet *keys = ps->keys;
	NimblePlanPrivate priv;

	memset(&priv, 0, sizeof(priv));

	/* a parameterized path takes its keys from its join clause */
	if (best_path->path.param_info)
	{
		ListCell   *lc;

		foreach(lc, best_path->path.param_info->ppi_clauses)
		{
			const char *why = NULL;
			NimbleKeySet *jkeys = keys_of_clause(root, lfirst_node(RestrictInfo, lc),
												 baserel->relid, ps->key_attno,
												 true, &why);

			if (jkeys && jkeys->mode == NIMBLE_KEYS_EXACT)
			{
				keys = jkeys;
				priv.parameterized = true;
				break;
			}
		}
	}
	if (keys == NULL && res->list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_DYNAMIC_PARAMETER_VALUE_NEEDED),
				 errmsg("a query on foreign table \"%s\" needs a condition on %s",
						get_rel_name(foreigntableid), res->key_column),
				 ps->unpushed
				 ? errdetail("The condition on %s cannot be sent to the API: %s.",
							 res->key_column, ps->unpushed)
				 : errdetail("The %s API cannot list %s: each row is fetched by its %s.",
							 ps->table.api->name, res->name, res->key_column),
				 ps->unpushed
				 ? errhint("Declare %s as text or varchar, whose = is the API's match on ids.",
						   res->key_column)
				 : errhint("Add WHERE %s = '...' or %s = ANY(...), or join on %s with a table that has it.",
						   res->key_column, res->key_column, res->key_column)));

	priv.route = choose_route(ps, keys);
	priv.is_array = keys ? keys->is_array : NIL;
	priv.retrieved_attrs = retrieved_attrs(ps);
	priv.needs_extra = ps->needs_extra;
	priv.key_column = pstrdup(res->key_column);
	priv.key_attno = ps->key_attno;
	priv.row_bound = priv.parameterized ? 0 : row_bound(root, baserel);
	priv.key_mode = keys ? keys->mode : NIMBLE_KEYS_EXACT;
	priv.key_opno = keys ? keys->opno : InvalidOid;
	priv.key_collation = keys ? keys->collation : InvalidOid;
	priv.unpushed = keys ? NULL : (char *) ps->unpushed;

	/* every condition is checked locally too, the pushed ones included */
	return make_foreignscan(tlist,
							extract_actual_clauses(scan_clauses, false),
							baserel->relid,
							keys ? keys->exprs : NIL,
							nimble_private_to_list(&priv),
							NIL, NIL, outer_plan);
}

/*
 * The plan's fdw_private from priv: a list indexed by
 * NimbleScanPrivateIndex.  Oids go as Integers (the bits round-trip).
 */
List *
nimble_private_to_list(const NimblePlanPrivate *priv)
{
	List	   *list = NIL;

	list = lappend(list, makeInteger(priv->route));
	list = lappend(list, priv->is_array);
	list = lappend(list, priv->retrieved_attrs);
	list = lappend(list, makeBoolean(priv->needs_extra));
	list = lappend(list, makeString(priv->key_column));
	list = lappend(list, makeInteger(priv->key_attno));
	list = lappend(list, makeBoolean(priv->parameterized));
	list = lappend(list, makeInteger(priv->row_bound));
	list = lappend(list, makeInteger(priv->key_mode));
	list = lappend(list, makeInteger((int) priv->key_opno));
	list = lappend(list, makeInteger((int) priv->key_collation));
	list = lappend(list, makeString(pstrdup(priv->unpushed ? priv->unpushed : "")));
	Assert(list_length(list) == NimblePrivateCount);
	return list;
}

/* The plan's fdw_private, back into priv. */
void
nimble_private_from_list(List *list, NimblePlanPrivate *priv)
{
	Assert(list_length(list) == NimblePrivateCount);
	priv->route = intVal(list_nth(list, NimblePrivateRoute));
	priv->is_array = (List *) list_nth(list, NimblePrivateKeysArray);
	priv->retrieved_attrs = (List *) list_nth(list, NimblePrivateRetrieved);
	priv->needs_extra = boolVal(list_nth(list, NimblePrivateNeedsExtra));
	priv->key_column = strVal(list_nth(list, NimblePrivateKeyColumn));
	priv->key_attno = intVal(list_nth(list, NimblePrivateKeyAttno));
	priv->parameterized = boolVal(list_nth(list, NimblePrivateParameterized));
	priv->row_bound = intVal(list_nth(list, NimblePrivateRowBound));
	priv->key_mode = intVal(list_nth(list, NimblePrivateKeyMode));
	priv->key_opno = (Oid) intVal(list_nth(list, NimblePrivateKeyOpno));
	priv->key_collation = (Oid) intVal(list_nth(list, NimblePrivateKeyCollation));
	priv->unpushed = strVal(list_nth(list, NimblePrivateUnpushed));
	if (priv->unpushed[0] == '\0')
		priv->unpushed = NULL;
}
