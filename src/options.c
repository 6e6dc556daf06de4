/*-------------------------------------------------------------------------
 *
 * options.c
 *		  Validation and lookup of nimble_fdw's options.
 *
 * One table lists every option with the catalog it belongs to and how its
 * value is checked; the validator and the error hints are derived from it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <curl/curl.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "nimble_fdw.h"

PG_FUNCTION_INFO_V1(nimble_fdw_validator);

typedef enum NimbleOptionKind
{
	NIMBLE_OPT_URL,				/* char *: an http(s) url */
	NIMBLE_OPT_API,				/* the name of an API description */
	NIMBLE_OPT_INT,				/* int, in [min, max] */
	NIMBLE_OPT_INT64,			/* int64, in [min, max] */
	NIMBLE_OPT_REAL,			/* double, in [min, max] */
	NIMBLE_OPT_BOOL,			/* bool */
	NIMBLE_OPT_PATH,			/* char *: an absolute path */
	NIMBLE_OPT_SECRET,			/* a key: no white space */
	NIMBLE_OPT_RESOURCE,		/* the name of a resource */
	NIMBLE_OPT_FIELD			/* a JSON path, "$key", "$row" or "#path" */
} NimbleOptionKind;

/* Who may give an option a value. */
typedef enum NimbleOptionGuard
{
	NIMBLE_ANYONE,				/* whoever may change the object */
	NIMBLE_SUPERUSER,			/* superusers only, any value */
	NIMBLE_SUPERUSER_FALSE		/* superusers only, to set it false */
} NimbleOptionGuard;

#define NOT_STORED ((size_t) -1)

/*
 * Every option: its name and catalog, how its value is checked (kind and
 * range), its default, where NimbleServerOptions keeps it, and who may set
 * it (with why, for the hint).  The validator, the lookup of a server's
 * options and the error hints all read this table; README section 4 is its
 * manual.  A default of NULL is none, or the server's API's (url: see
 * nimble_get_server_options).
 */
typedef struct NimbleOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
	NimbleOptionKind kind;
	double		min;			/* INT, INT64, REAL: allowed range */
	double		max;
	const char *default_value;
	size_t		offset;			/* in NimbleServerOptions, or NOT_STORED */
	NimbleOptionGuard guard;
	const char *guard_why;
} NimbleOption;

#define SERVER(field) offsetof(NimbleServerOptions, field)

static const NimbleOption nimble_options[] = {
	{"url", ForeignServerRelationId, NIMBLE_OPT_URL, 0, 0, NULL, SERVER(url)},
	{"api", ForeignServerRelationId, NIMBLE_OPT_API, 0, 0, NULL, NOT_STORED},
	{"timeout_ms", ForeignServerRelationId, NIMBLE_OPT_INT, 1, 3600000, "30000", SERVER(timeout_ms)},
	{"connect_timeout_ms", ForeignServerRelationId, NIMBLE_OPT_INT, 1, 600000, "10000",
	SERVER(connect_timeout_ms)},
	{"page_size", ForeignServerRelationId, NIMBLE_OPT_INT, 1, 1000, NULL, SERVER(page_size)},
	{"max_retries", ForeignServerRelationId, NIMBLE_OPT_INT, 0, 10, "2", SERVER(max_retries)},
	{"max_concurrency", ForeignServerRelationId, NIMBLE_OPT_INT, 1, NIMBLE_MAX_CONCURRENCY, "16",
	SERVER(max_concurrency)},
	{"max_response_bytes", ForeignServerRelationId, NIMBLE_OPT_INT64, 1024, 1073741824, "67108864",
	SERVER(max_response_bytes)},
	{"max_requests_per_second", ForeignServerRelationId, NIMBLE_OPT_REAL, 0, 100000, NULL,
	SERVER(max_requests_per_second)},
	{"cache_ttl", ForeignServerRelationId, NIMBLE_OPT_INT, 0, 604800, "0", SERVER(cache_ttl)},
	{"analyze_requests", ForeignServerRelationId, NIMBLE_OPT_INT, 1, 100000, "100",
	SERVER(analyze_requests)},
	{"ca_bundle", ForeignServerRelationId, NIMBLE_OPT_PATH, 0, 0, NULL, SERVER(ca_bundle),
	NIMBLE_SUPERUSER, "It names a file on the database server."},
	{"tls_verify", ForeignServerRelationId, NIMBLE_OPT_BOOL, 0, 0, "true", SERVER(tls_verify),
	NIMBLE_SUPERUSER_FALSE, "Without verification, anyone on the network path can read the API key."},
	{"api_key", UserMappingRelationId, NIMBLE_OPT_SECRET, 0, 0, NULL, NOT_STORED},
	{"resource", ForeignTableRelationId, NIMBLE_OPT_RESOURCE, 0, 0, NULL, NOT_STORED},
	{"field", AttributeRelationId, NIMBLE_OPT_FIELD, 0, 0, NULL, NOT_STORED},
};

static const NimbleOption *
find_option(const char *name, Oid context)
{
	for (int i = 0; i < lengthof(nimble_options); i++)
	{
		if (nimble_options[i].context == context &&
			strcmp(nimble_options[i].name, name) == 0)
			return &nimble_options[i];
	}
	return NULL;
}

static void
report_unknown_option(const char *name, Oid context)
{
	StringInfoData valid;

	initStringInfo(&valid);
	for (int i = 0; i < lengthof(nimble_options); i++)
	{
		if (nimble_options[i].context != context)
			continue;
		appendStringInfo(&valid, "%s%s", valid.len > 0 ? ", " : "",
						 nimble_options[i].name);
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\"", name),
			 valid.len > 0
			 ? errhint("Valid options in this context are: %s.", valid.data)
			 : errhint("There are no valid options in this context.")));
}

static void
report_out_of_range(const NimbleOption *opt, const char *value, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
			 errhint("\"%s\" must be %s from %.15g to %.15g.",
					 opt->name, what, opt->min, opt->max)));
}

static int64
parse_int_option(const NimbleOption *opt, const char *value)
{
	int64		result;
	char	   *end;

	errno = 0;
	result = strtoi64(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' ||
		result < opt->min || result > opt->max)
		report_out_of_range(opt, value, "an integer");
	return result;
}

static double
parse_real_option(const NimbleOption *opt, const char *value)
{
	double		result;
	char	   *end;

	errno = 0;
	result = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || isnan(result) ||
		result < opt->min || result > opt->max)
		report_out_of_range(opt, value, "a number");
	return result;
}

static bool
parse_bool_option(const NimbleOption *opt, const char *value)
{
	bool		on;

	if (!parse_bool(value, &on))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
				 errhint("\"%s\" must be true or false.", opt->name)));
	return on;
}

/*
 * Store an option's value, already checked, where opts keeps it.
 */
static void
store_option(const NimbleOption *opt, const char *value, NimbleServerOptions *opts)
{
	char	   *field = (char *) opts + opt->offset;

	switch (opt->kind)
	{
		case NIMBLE_OPT_INT:
			*(int *) field = (int) parse_int_option(opt, value);
			break;
		case NIMBLE_OPT_INT64:
			*(int64 *) field = parse_int_option(opt, value);
			break;
		case NIMBLE_OPT_REAL:
			*(double *) field = parse_real_option(opt, value);
			break;
		case NIMBLE_OPT_BOOL:
			*(bool *) field = parse_bool_option(opt, value);
			break;
		case NIMBLE_OPT_URL:
		case NIMBLE_OPT_PATH:
			*(char **) field = pstrdup(value);
			break;
		default:
			elog(ERROR, "nimble_fdw: option \"%s\" is not stored", opt->name);
	}
}

/*
 * May the current user give opt this value?  Checked only where the
 * statement sets it (option_changes.c): the owner of a server that a
 * superuser set it on may still change the server's other options.
 */
static void
check_guard(const NimbleOption *opt, const char *value)
{
	if (opt->guard == NIMBLE_ANYONE || superuser() ||
		!nimble_server_option_is_set(opt->name))
		return;
	if (opt->guard == NIMBLE_SUPERUSER_FALSE && parse_bool_option(opt, value))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 opt->guard == NIMBLE_SUPERUSER_FALSE
			 ? errmsg("only superusers may set \"%s\" to false", opt->name)
			 : errmsg("only superusers may set \"%s\"", opt->name),
			 errhint("%s", opt->guard_why)));
}

/*
 * The url must be http(s) with a host, and nothing that would end up in a
 * message or be misread when paths are appended: no credentials, query or
 * fragment.
 */
static void
check_url(const char *value, const NimbleApiDef *api)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	CURLUcode	rc;
	const char *problem = NULL;

	u = curl_url();
	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, value, 0);
	if (rc != CURLUE_OK)
		problem = "it is not a valid URL";
	else
	{
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_USER, &user, 0);
		curl_url_get(u, CURLUPART_QUERY, &query, 0);
		curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
		if (scheme == NULL ||
			(strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
			problem = "only http and https URLs are allowed";
		else if (host == NULL || host[0] == '\0')
			problem = "it has no host";
		else if (user != NULL)
			problem = "it must not contain credentials; put the key in a user mapping";
		else if (query != NULL || fragment != NULL)
			problem = "it must not contain a query or fragment";
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(u);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"url\": %s", problem),
				 errhint("Use the API base URL with its version prefix, for example '%s'.",
						 api->example_url)));
}

static void
check_secret(const char *name, const char *value)
{
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must not be empty", name)));
	/* It goes into an HTTP header: no control characters or spaces. */
	for (const char *p = value; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" contains white space or control characters",
							name),
					 errhint("Paste the key exactly as the API's dashboard or account settings show it.")));
	}
}

/*
 * A table's options are checked before it knows its server: here, that some
 * API serves the resource; nimble_get_table_options, that the server's does.
 */
static void
check_resource(const char *value)
{
	if (!nimble_any_api_has_resource(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"resource\": \"%s\"", value),
				 errhint("Valid resources are: %s.", nimble_all_resource_names())));
}

/*
 * A dotted JSON path: non-empty segments; "$key", "$row" and "#path" are
 * special.
 */
static void
check_field(const char *value)
{
	const char *p = value;

	if (strcmp(value, "$key") == 0 || strcmp(value, "$row") == 0)
		return;
	if (*p == '#')
		p++;
	if (*p == '\0' || *p == '.' || value[strlen(value) - 1] == '.' ||
		strstr(p, "..") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"field\": \"%s\"", value),
				 errhint("Give a JSON field name, a dotted path such as 'input.url', '#path' for an array's length, '$key' or '$row'.")));
}

/* The value of the option name in a list of options, or NULL. */
static char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/* The API a server's options name, or the default one; NULL: unknown. */
static const NimbleApiDef *
options_api(List *options)
{
	const char *name = option_value(options, "api");

	return name ? nimble_api_lookup(name) : nimble_api_default();
}

/* An API whose host we cannot know needs the url option. */
static void
check_api_needs(List *options)
{
	const NimbleApiDef *api = options_api(options);

	if (api == NULL || api->default_url != NULL ||
		option_value(options, "url") != NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
			 errmsg("a server with api '%s' needs the option \"url\"", api->name),
			 errhint("Add OPTIONS (url '...'), the API's base URL with its version prefix, for example '%s'.",
					 api->example_url)));
}

/*
 * The FDW's validator: every option of the catalog's object is known, its
 * value right, and the current user may give it that value.
 */
Datum
nimble_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const NimbleOption *opt = find_option(def->defname, catalog);
		char	   *value;

		if (opt == NULL)
			report_unknown_option(def->defname, catalog);
		value = defGetString(def);
		check_guard(opt, value);

		switch (opt->kind)
		{
			case NIMBLE_OPT_URL:
				check_url(value, options_api(options) ? options_api(options)
						  : nimble_api_default());
				break;
			case NIMBLE_OPT_API:
				if (nimble_api_lookup(value) == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid value for option \"api\": \"%s\"", value),
							 errhint("Valid values are: %s.", nimble_api_names())));
				break;
			case NIMBLE_OPT_INT:
			case NIMBLE_OPT_INT64:
				(void) parse_int_option(opt, value);
				break;
			case NIMBLE_OPT_REAL:
				(void) parse_real_option(opt, value);
				break;
			case NIMBLE_OPT_BOOL:
				(void) parse_bool_option(opt, value);
				break;
			case NIMBLE_OPT_PATH:
				if (!is_absolute_path(value))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"%s\" must be an absolute path", opt->name)));
				break;
			case NIMBLE_OPT_SECRET:
				check_secret(opt->name, value);
				break;
			case NIMBLE_OPT_RESOURCE:
				check_resource(value);
				break;
			case NIMBLE_OPT_FIELD:
				check_field(value);
				break;
		}
	}

	if (catalog == ForeignServerRelationId)
		check_api_needs(options);

	PG_RETURN_VOID();
}

/*
 * A server's options into opts: the table's defaults, the API's own
 * default url, then the server's values.
 * The validator let only good values in.
 */
void
nimble_get_server_options(ForeignServer *server, NimbleServerOptions *opts)
{
	const NimbleApiDef *api = options_api(server->options);
	ListCell   *lc;

	if (api == NULL)
		elog(ERROR, "server \"%s\" names an unknown api", server->servername);
	memset(opts, 0, sizeof(*opts));
	opts->api = api;
	opts->serverid = server->serverid;
	for (int i = 0; i < lengthof(nimble_options); i++)
	{
		const NimbleOption *opt = &nimble_options[i];

		if (opt->context == ForeignServerRelationId && opt->offset != NOT_STORED &&
			opt->default_value)
			store_option(opt, opt->default_value, opts);
	}
	/* an API without a default url cannot get here without one (validator) */
	opts->url = pstrdup(api->default_url ? api->default_url : "");
	/* not set: the API's documented limit; 0, set: none of ours at all */
	opts->max_requests_per_second = -1;

	foreach(lc, server->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const NimbleOption *opt = find_option(def->defname, ForeignServerRelationId);

		if (opt && opt->offset != NOT_STORED)
			store_option(opt, defGetString(def), opts);
	}

	/* Paths are appended to the url: drop trailing slashes once, here. */
	{
		int			len = strlen(opts->url);

		while (len > 0 && opts->url[len - 1] == '/')
			len--;
		opts->url = pnstrdup(opts->url, len);
	}
}

/*
 * The options of foreign table relid into opts, and of its server into
 * sopts (read once, for both); returns the server.  The table's resource
 * is its "resource" option, or else the table's name when that names a
 * resource (so imported tables need no option at all).
 */
ForeignServer *
nimble_get_table_options(Oid relid, NimbleTableOptions *opts,
						 NimbleServerOptions *sopts)
{
	ForeignTable *table = GetForeignTable(relid);
	ForeignServer *server = GetForeignServer(table->serverid);
	const char *resource;

	nimble_get_server_options(server, sopts);
	opts->relid = relid;
	opts->serverid = table->serverid;
	opts->api = sopts->api;

	resource = option_value(table->options, "resource");
	if (resource == NULL)
		resource = get_rel_name(relid);

	opts->resource = nimble_resource_lookup(opts->api, resource);
	if (opts->resource == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
				 errmsg("foreign table \"%s\" does not name a resource of the %s API",
						get_rel_name(relid), opts->api->title),
				 errhint("Set OPTIONS (resource '...') to one of: %s.",
						 nimble_resource_names(opts->api))));
	return server;
}

/*
 * What every scan passes before it may make a request, in one order, for
 * a table's scan and for nimble_wait_batch alike: the server's url must be
 * allowed to receive keys (nimble_fdw.allowed_hosts), then userid needs a
 * user mapping with an api_key.  Returns the key.
 */
char *
nimble_scan_credentials(ForeignServer *server, const NimbleServerOptions *opts,
						Oid userid)
{
	nimble_check_allowed_host(opts->url, server);
	return nimble_get_api_key(server, userid);
}

/* The "field" option of a column, or NULL. */
char *
nimble_get_column_field(Oid relid, AttrNumber attnum)
{
	return option_value(GetForeignColumnOptions(relid, attnum), "field");
}

/*
 * The api key of the user mapping for userid (or PUBLIC).  It stays in
 * backend memory: it is never put into a plan, a message or a log line.
 */
char *
nimble_get_api_key(ForeignServer *server, Oid userid)
{
	HeapTuple	tp;
	UserMapping *um;
	char	   *api_key;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user mapping not found for user \"%s\" and server \"%s\"",
						GetUserNameFromId(userid, true), server->servername),
				 errhint("Create one with CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (api_key '...').",
						 quote_identifier(server->servername))));
	ReleaseSysCache(tp);

	um = GetUserMapping(userid, server->serverid);
	api_key = option_value(um->options, "api_key");
	if (api_key != NULL)
		return api_key;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
			 errmsg("user mapping for user \"%s\" and server \"%s\" has no api_key",
					GetUserNameFromId(userid, true), server->servername),
			 errhint("Add it with ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (ADD api_key '...').",
					 quote_identifier(server->servername))));
	return NULL;				/* keep compiler quiet */
}
