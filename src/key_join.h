/*-------------------------------------------------------------------------
 *
 * key_join.h
 *		  What the key join's planning (key_join.c) and execution
 *		  (key_join_exec.c) share: the shape of its plan.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_KEY_JOIN_H
#define NIMBLE_KEY_JOIN_H

#include "nodes/extensible.h"

#include "nimble_fdw.h"

#define NIMBLE_KEY_JOIN_NAME "NimbleKeyJoin"

/* custom_private of the plan: a list indexed by this enum */
enum KeyJoinPrivateIndex
{
	KJ_INNER_POS,				/* Integer: which member of custom_relids is
								 * the inner table's range table index (0:
								 * the lowest); setrefs shifts the indexes,
								 * not their order */
	KJ_JOINTYPE,				/* Integer: JoinType */
	KJ_BLOCK_ROWS,				/* Integer */
	KJ_NOUTER,					/* Integer: scan tuple columns from the outer side */
	KJ_INNER_ATTNOS,			/* List of Integer: the inner column of each
								 * further scan tuple column (0: the whole
								 * row) */
	KJ_INNER_PLAN,				/* List: the inner table's NimblePlanPrivate */
	KJ_COUNT
};

/* custom_exprs of the plan */
enum KeyJoinExprIndex
{
	KJ_KEY_EXPR,				/* the outer key expression */
	KJ_JOIN_QUALS,				/* List: further join conditions */
	KJ_INNER_QUALS				/* List: the inner table's own conditions */
};

extern const CustomScanMethods nimble_key_join_scan_methods;

#endif							/* NIMBLE_KEY_JOIN_H */
