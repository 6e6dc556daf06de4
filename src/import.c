/*-------------------------------------------------------------------------
 *
 * import.c
 *		  IMPORT FOREIGN SCHEMA for nimble_fdw.
 *
 * The remote "schema" is the server's API itself (its name: nimble,
 * scrape, ...); its tables are the resources of the API's description,
 * with the columns and types listed there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "nimble_fdw.h"

/* Does LIMIT TO / EXCEPT let this table through? */
static bool
table_wanted(ImportForeignSchemaStmt *stmt, const char *name)
{
	ListCell   *lc;
	bool		listed = false;

	if (stmt->list_type == FDW_IMPORT_SCHEMA_ALL)
		return true;
	foreach(lc, stmt->table_list)
	{
		RangeVar   *rv = (RangeVar *) lfirst(lc);

		if (strcmp(rv->relname, name) == 0)
			listed = true;
	}
	return stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO ? listed : !listed;
}

/*
 * IMPORT FOREIGN SCHEMA: one CREATE FOREIGN TABLE per resource of the
 * server's API (as LIMIT TO / EXCEPT allow), with the description's
 * columns and types.  The remote schema is the API's name.
 */
List *
nimble_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	NimbleServerOptions opts;
	const NimbleApiDef *api;
	List	   *commands = NIL;

	nimble_get_server_options(server, &opts);
	api = opts.api;
	if (strcmp(stmt->remote_schema, api->name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("remote schema \"%s\" does not exist", stmt->remote_schema),
				 errhint("Server \"%s\" offers one schema: IMPORT FOREIGN SCHEMA %s FROM SERVER %s INTO ...",
						 server->servername, api->name,
						 quote_identifier(server->servername))));

	for (int i = 0; i < api->nresources; i++)
	{
		const NimbleResourceDef *res = &api->resources[i];
		StringInfoData buf;

		if (!table_wanted(stmt, res->name))
			continue;
		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (",
						 quote_identifier(res->name));
		for (int c = 0; c < res->ncolumns; c++)
			appendStringInfo(&buf, "%s%s %s", c > 0 ? ", " : "",
							 quote_identifier(res->columns[c].name),
							 res->columns[c].type);
		appendStringInfo(&buf, ") SERVER %s OPTIONS (resource %s)",
						 quote_identifier(server->servername),
						 quote_literal_cstr(res->name));
		commands = lappend(commands, buf.data);
	}
	return commands;
}
