/*-------------------------------------------------------------------------
 *
 * option_changes.c
 *		  Which options the ALTER SERVER being run changes.
 *
 * A validator sees an object's whole option list after a change, not the
 * change, and not which object it is for.  Some options may be set by
 * superusers only (tls_verify false, ca_bundle); once a superuser has set
 * one on a server that someone else owns, the owner must still be able to
 * change the server's other options.  So the validator asks here whether
 * an option is being set by the statement at hand.
 *
 * A ProcessUtility hook notes the options of each ALTER SERVER while it
 * runs.  When the hook was not yet installed for the statement (the
 * library is loaded by the validator call of this very statement), the
 * active portal's statement is read instead; failing that, every option
 * counts as changed, which only errs on the safe side.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/portal.h"

#include "nimble_fdw.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* the ALTER SERVER statement being run, innermost first; NULL: none */
static AlterForeignServerStmt *current_alter = NULL;

static void
nimble_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	AlterForeignServerStmt *saved = current_alter;

	if (IsA(pstmt->utilityStmt, AlterForeignServerStmt))
		current_alter = (AlterForeignServerStmt *) pstmt->utilityStmt;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		current_alter = saved;
	}
	PG_END_TRY();
}

/*
 * Install the hook.  Called from _PG_init.
 */
void
nimble_option_changes_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = nimble_process_utility;
}

/* The ALTER SERVER of the active portal, if it runs exactly one. */
static AlterForeignServerStmt *
portal_alter(void)
{
	AlterForeignServerStmt *found = NULL;
	ListCell   *lc;

	if (ActivePortal == NULL)
		return NULL;
	foreach(lc, ActivePortal->stmts)
	{
		PlannedStmt *stmt = lfirst_node(PlannedStmt, lc);

		if (stmt->commandType != CMD_UTILITY ||
			!IsA(stmt->utilityStmt, AlterForeignServerStmt))
			continue;
		if (found)
			return NULL;		/* two: cannot tell which */
		found = (AlterForeignServerStmt *) stmt->utilityStmt;
	}
	return found;
}

/*
 * Does the statement being run give the server option name a value: is it
 * a CREATE SERVER (every option is new), or an ALTER SERVER that ADDs or
 * SETs it?  True as well when that cannot be told.  For the validator's
 * rules about who may set an option; a DROP is always allowed.
 */
bool
nimble_server_option_is_set(const char *name)
{
	AlterForeignServerStmt *stmt = current_alter ? current_alter : portal_alter();
	ListCell   *lc;

	if (stmt == NULL)
		return true;			/* CREATE SERVER, or unknown: as set */
	foreach(lc, stmt->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0 && def->defaction != DEFELEM_DROP)
			return true;
	}
	return false;
}
