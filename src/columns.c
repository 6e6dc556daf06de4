/*-------------------------------------------------------------------------
 *
 * columns.c
 *		  Which response of a scan a column's value comes from, by route.
 *
 * An API's description says where each column is in each endpoint's rows
 * (api.h); a route (NimbleRoute) says which endpoints a scan reads.  This
 * joins the two, for the planner (may this route serve the query's
 * columns?) and for the scan (where is each column?), so that the two
 * cannot disagree.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nimble_fdw.h"

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
		if (col->extra_path && res->extra)
		{
			*source = NIMBLE_SRC_EXTRA;
			return col->extra_path;
		}
	}
	else if (col->keyed_path && res->keyed)
	{
		*source = NIMBLE_SRC_KEYED;
		return col->keyed_path;
	}
	*source = NIMBLE_SRC_NONE;
	return NULL;
}
