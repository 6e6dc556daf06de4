/*-------------------------------------------------------------------------
 *
 * routes.c
 *		  The batch APIs nimble_fdw speaks, and lookups in their tables.
 *
 * Each API is data in a file of its own (routes_nimble.c, routes_scrape.c,
 * routes_factcheck.c): endpoints, resources, columns, the auth header and
 * where error bodies say why.  The scan, HTTP and decoding code are driven
 * by those tables, so another batch API of the same shape (batch, its
 * items, its progress) is another file of tables and a line below, not
 * another copy of the scan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "nimble_fdw.h"

static const NimbleApiDef *const all_apis[] = {
	&nimble_api_def_nimble,
	&nimble_api_def_scrape,
	&nimble_api_def_factcheck,
};

const NimbleApiDef *
nimble_api_lookup(const char *name)
{
	for (int i = 0; i < lengthof(all_apis); i++)
	{
		if (strcmp(all_apis[i]->name, name) == 0)
			return all_apis[i];
	}
	return NULL;
}

/* "nimble, scrape, factcheck": for hints. */
char *
nimble_api_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(all_apis); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", all_apis[i]->name);
	return buf.data;
}

/* The resources of api, as "batches, batch_tasks, ...": for hints. */
char *
nimble_resource_names(const NimbleApiDef *api)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < api->nresources; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", api->resources[i].name);
	return buf.data;
}

/*
 * Does any API serve a resource of this name?  A table's options are
 * checked before it knows its server, hence its API.
 */
bool
nimble_any_api_has_resource(const char *name)
{
	for (int i = 0; i < lengthof(all_apis); i++)
	{
		if (nimble_resource_lookup(all_apis[i], name) != NULL)
			return true;
	}
	return false;
}

const NimbleResourceDef *
nimble_resource_lookup(const NimbleApiDef *api, const char *name)
{
	for (int i = 0; i < api->nresources; i++)
	{
		if (strcmp(api->resources[i].name, name) == 0)
			return &api->resources[i];
	}
	return NULL;
}

const NimbleColumnDef *
nimble_column_lookup(const NimbleResourceDef *res, const char *name)
{
	for (int i = 0; i < res->ncolumns; i++)
	{
		if (strcmp(res->columns[i].name, name) == 0)
			return &res->columns[i];
	}
	return NULL;
}

/*
 * Where a column's value comes from on a route: the JSON path, and which
 * response holds it.  A column with a "field" option, or one whose name is
 * not a known column, is read from the resource's own rows: the list items
 * of a listed resource, the keyed rows otherwise.  The planner and the scan
 * both ask here, so they cannot disagree.
 */
const char *
nimble_column_path(const NimbleResourceDef *res, const char *colname,
				   const char *field, NimbleRoute route, NimbleSource *source)
{
	const NimbleColumnDef *col = field ? NULL : nimble_column_lookup(res, colname);
	const char *path = field ? field : colname;

	if (col == NULL)
	{
		if (res->list_rows)
		{
			*source = route == NIMBLE_ROUTE_LIST_ROWS ? NIMBLE_SRC_LIST : NIMBLE_SRC_NONE;
			return *source == NIMBLE_SRC_NONE ? NULL : path;
		}
		*source = route == NIMBLE_ROUTE_LIST_ROWS ? NIMBLE_SRC_NONE : NIMBLE_SRC_KEYED;
		return *source == NIMBLE_SRC_NONE ? NULL : path;
	}

	if (route == NIMBLE_ROUTE_LIST_ROWS)
	{
		if (col->list_path)
		{
			*source = NIMBLE_SRC_LIST;
			return col->list_path;
		}
		if (col->extra_path && res->extra_endpoint >= 0)
		{
			*source = NIMBLE_SRC_EXTRA;
			return col->extra_path;
		}
	}
	else if (col->keyed_path && res->keyed_endpoint >= 0)
	{
		*source = NIMBLE_SRC_KEYED;
		return col->keyed_path;
	}
	*source = NIMBLE_SRC_NONE;
	return NULL;
}
