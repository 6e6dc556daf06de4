/*-------------------------------------------------------------------------
 *
 * registry.c
 *		  The batch APIs nimble_fdw speaks, and lookups in their descriptions.
 *
 * Each API is data in a file of its own in this folder (api.h says what
 * a description holds).  The scan, HTTP and decoding code are driven by
 * the descriptions, so another batch API of the same shape (batch, its
 * items, its progress) is another file and a line in the list below, not
 * another copy of the scan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "api.h"

/* every API; the first is a server's when it names none */
static const NimbleApiDef *const all_apis[] = {
	&nimble_api_def_nimble,
	&nimble_api_def_scrape,
	&nimble_api_def_factcheck,
};

/* The API named name (a server's "api" option), or NULL. */
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

/* The API of a server without an "api" option. */
const NimbleApiDef *
nimble_api_default(void)
{
	return all_apis[0];
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
 * Every API's resources, as "batches, ... (nimble); ... (scrape)": for the
 * hint of a table's options, which are checked before the table knows its
 * server, hence its API.
 */
char *
nimble_all_resource_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(all_apis); i++)
		appendStringInfo(&buf, "%s%s (api %s)", i > 0 ? "; " : "",
						 nimble_resource_names(all_apis[i]), all_apis[i]->name);
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

/* The resource of api named name, or NULL. */
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

/* The built-in column of res named name, or NULL. */
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

/* What api documents of an HTTP status, or NULL where it says nothing. */
const NimbleStatusDef *
nimble_api_status(const NimbleApiDef *api, long status)
{
	for (const NimbleStatusDef *def = api->statuses; def && def->status; def++)
	{
		if (def->status == status)
			return def;
	}
	return NULL;
}
