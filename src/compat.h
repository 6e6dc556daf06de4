/*-------------------------------------------------------------------------
 *
 * compat.h
 *		  The server APIs that changed between the PostgreSQL major versions
 *		  nimble_fdw builds for (15, 16, 17 and 18), in one place.
 *
 * Each difference is a macro named for what it does, so that the callers
 * read the same on every version and the PG_VERSION_NUM tests stay here.
 * The macros expand to calls of functions declared by the headers the
 * caller already includes, so that json_doc.c can use this file in its
 * frontend (fuzzing) build too; the one inline function, for the server
 * only, brings its own headers.
 * A change is guarded at the release that made it: 16 for what began in
 * 16, although Debian ships only 15, 17 and 18 here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_COMPAT_H
#define NIMBLE_COMPAT_H

#include "pg_config.h"

#if PG_VERSION_NUM < 150000
#error "nimble_fdw needs PostgreSQL 15 or later"
#endif

/*
 * The role whose user mapping a foreign scan uses: the view owner's for a
 * view, else the current user.  16 moved permission checks out of the
 * range table (RTEPermissionInfo) and gave ForeignScan its own field.
 */
#if PG_VERSION_NUM >= 160000
#define NIMBLE_SCAN_CHECK_AS_USER(fsplan, estate) \
	((fsplan)->checkAsUser)
#else
#define NIMBLE_SCAN_CHECK_AS_USER(fsplan, estate) \
	(exec_rt_fetch((fsplan)->scan.scanrelid, (estate))->checkAsUser)
#endif

/*
 * May roleid use the foreign server?  16 folded the per-catalog ACL checks
 * into object_aclcheck.
 */
#if PG_VERSION_NUM >= 160000
#define nimble_server_aclcheck(serverid, roleid, mode) \
	object_aclcheck(ForeignServerRelationId, (serverid), (roleid), (mode))
#else
#define nimble_server_aclcheck(serverid, roleid, mode) \
	pg_foreign_server_aclcheck((serverid), (roleid), (mode))
#endif

/*
 * The role to check a range table entry's relation as (InvalidOid: the
 * current user), for a scan that the executor does not make itself: the
 * key join's inner table.  16 keeps it in the entry's RTEPermissionInfo.
 */
#if PG_VERSION_NUM >= 160000
#define NIMBLE_RTE_CHECK_AS_USER(estate, rte) \
	(getRTEPermissionInfo((estate)->es_rteperminfos, (rte))->checkAsUser)
#else
#define NIMBLE_RTE_CHECK_AS_USER(estate, rte) \
	((rte)->checkAsUser)
#endif

/*
 * A foreign scan path with no pathkeys, outer path or fdw_private.  17
 * added fdw_restrictinfo (for join pushdown, which we do not do); 18 counts
 * disabled nodes apart from the cost, where earlier releases add
 * disable_cost to it.
 */
#if PG_VERSION_NUM >= 180000
#define nimble_create_foreignscan_path(root, rel, rows, disabled, startup, total, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), (disabled) ? 1 : 0, \
							(startup), (total), NIL, (outer), NULL, NIL, NIL)
#elif PG_VERSION_NUM >= 170000
#define nimble_create_foreignscan_path(root, rel, rows, disabled, startup, total, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), \
							(startup) + ((disabled) ? disable_cost : 0), \
							(total) + ((disabled) ? disable_cost : 0), \
							NIL, (outer), NULL, NIL, NIL)
#else
#define nimble_create_foreignscan_path(root, rel, rows, disabled, startup, total, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), \
							(startup) + ((disabled) ? disable_cost : 0), \
							(total) + ((disabled) ? disable_cost : 0), \
							NIL, (outer), NULL, NIL)
#endif

/*
 * A wait event set that is freed with the resource owner on error (17
 * tracks it by resource owner instead of a memory context).  Callers free
 * it themselves on every path as well.
 */
#if PG_VERSION_NUM >= 170000
#define nimble_create_wait_event_set(nevents) \
	CreateWaitEventSet(CurrentResourceOwner, (nevents))
#else
#define nimble_create_wait_event_set(nevents) \
	CreateWaitEventSet(CurrentMemoryContext, (nevents))
#endif

/*
 * A JSON lexer over len bytes of json.  17 lets the caller supply the
 * struct and takes the length as size_t; NULL asks it to allocate one.
 */
#if PG_VERSION_NUM >= 170000
#define nimble_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (size_t) (len), (encoding), \
								 (need_escapes))
#else
#define nimble_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#endif

/*
 * 18 replaced the trailing pg_attribute_noreturn() with pg_noreturn, which
 * goes before the declaration; before 18 the attribute may go there too.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * 18: ExecGetRangeTableRelation() asks whether the relation is a result
 * relation, and heap_form_minimal_tuple() how many bytes to leave free
 * before the tuple.
 */
#if PG_VERSION_NUM >= 180000
#define nimble_range_table_relation(estate, rti) \
	ExecGetRangeTableRelation((estate), (rti), false)
#define nimble_form_minimal_tuple(desc, values, nulls) \
	heap_form_minimal_tuple((desc), (values), (nulls), 0)
#else
#define nimble_range_table_relation(estate, rti) \
	ExecGetRangeTableRelation((estate), (rti))
#define nimble_form_minimal_tuple(desc, values, nulls) \
	heap_form_minimal_tuple((desc), (values), (nulls))
#endif

#ifndef FRONTEND

#include "fmgr.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif

/*
 * str as a value of a type, by its input function; false where str is no
 * value of the type.  16 lets input functions report bad input softly;
 * on 15 the error is thrown, as it is where the value is read for a row.
 */
static inline bool
nimble_input_value(FmgrInfo *flinfo, char *str, Oid ioparam, int32 typmod,
				   Datum *result)
{
#if PG_VERSION_NUM >= 160000
	ErrorSaveContext escontext = {T_ErrorSaveContext};

	return InputFunctionCallSafe(flinfo, str, ioparam, typmod,
								 (Node *) &escontext, result);
#else
	*result = InputFunctionCall(flinfo, str, ioparam, typmod);
	return true;
#endif
}

/*
 * A wait event of our own name in pg_stat_activity: 17 registers custom
 * ones (in core's shared memory, no preload needed); before, all of an
 * extension's waits show as "Extension".
 */
#if PG_VERSION_NUM >= 170000
#define nimble_wait_event_new(name) WaitEventExtensionNew(name)
#else
#define nimble_wait_event_new(name) ((void) (name), PG_WAIT_EXTENSION)
#endif

/*
 * The backend's place among the PGPROCs: 17 names it MyProcNumber; before,
 * it is the PGPROC's pgprocno.  (Needs storage/proc.h.)
 */
#if PG_VERSION_NUM >= 170000
#define nimble_my_proc_number() ((int) MyProcNumber)
#else
#define nimble_my_proc_number() (MyProc->pgprocno)
#endif

#endif							/* !FRONTEND */

#endif							/* NIMBLE_COMPAT_H */
