/*-------------------------------------------------------------------------
 *
 * api.h
 *		  A batch API described as data: what the engine reads of an API.
 *
 * Each API nimble_fdw speaks is one file in src/api/ that fills in one
 * NimbleApiDef, and one line of the registry (registry.c).  Everything the
 * engine knows of an API comes from its description: endpoints and how
 * they page, resources and their columns, where the key goes, where error
 * bodies say why, which statuses mean what, the nouns of its messages, and
 * what nimble_wait_batch waits on.  The engine's own files never name an
 * API.  src/README.md walks through adding one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_API_H
#define NIMBLE_API_H

/*
 * How a list endpoint pages through its items (paging.c).  CURSOR needs
 * cursor_param, next_cursor and has_next; OFFSET needs offset_param and
 * has_next or total (or both).  limit_param and total are optional.
 */
typedef enum NimblePaging
{
	NIMBLE_PAGING_NONE,			/* one response holds everything */
	NIMBLE_PAGING_CURSOR,		/* next_cursor / has_next, sent back as cursor */
	NIMBLE_PAGING_OFFSET		/* offset = items so far, until has_next is
								 * false or a page is empty */
} NimblePaging;

typedef struct NimbleEndpoint
{
	const char *path;			/* "/batches" or "/batches/{key}" */
	const char *rows;			/* JSON path of the rows; "" = the body is one row */
	bool		rows_required;	/* a body without the rows path is malformed */
	bool		rows_single;	/* the rows path holds one object, not an array */
	NimblePaging paging;
	const char *cursor_param;	/* query parameter carrying the cursor */
	const char *offset_param;	/* query parameter carrying the offset */
	const char *limit_param;	/* query parameter carrying the page size */
	const char *next_cursor;	/* JSON paths in the body (not in a row); */
	const char *has_next;		/* NULL where the API has none */
	const char *total;
	const char *item_key;		/* list: path of each item's key, in the row */
} NimbleEndpoint;

/*
 * Where a column's value is found.  A path is a dotted JSON path relative
 * to a row; "$key" means the key the request was made for, "$row" the whole
 * row, and "#path" the number of elements of the array at path.  NULL: this
 * endpoint does not provide the column.
 */
typedef struct NimbleColumnDef
{
	const char *name;
	const char *type;			/* SQL type that IMPORT FOREIGN SCHEMA uses */
	const char *list_path;		/* in an item of the list endpoint */
	const char *keyed_path;		/* in a row of the resource's keyed endpoint */
	const char *extra_path;		/* in the per-row enrichment response */
} NimbleColumnDef;

/* A column at the same path in the list's items and in the keyed rows. */
#define NIMBLE_COLUMN_LISTED_AND_KEYED(name, type, path) \
	{name, type, path, path, NULL}

typedef struct NimbleResourceDef
{
	const char *name;			/* the table IMPORT FOREIGN SCHEMA creates */
	const char *key_column;		/* the column that selects keyed requests */
	const char *unit_noun;		/* what one key names, for messages: "batch" */
	const char *unit_plural;	/* and many: "batches" */
	const NimbleColumnDef *columns;
	int			ncolumns;
	const NimbleEndpoint *keyed;	/* rows for one key, or NULL */
	const NimbleEndpoint *list; /* walked without keys, or NULL: a query
								 * then needs a key condition */
	bool		list_rows;		/* the list's items are this resource's rows */
	const NimbleEndpoint *extra;	/* per-row request for columns the list
									 * lacks, or NULL */
} NimbleResourceDef;

/*
 * What an API documents of an HTTP status beyond the common rules
 * (http.c): whether a retry can help, and what to do about it.
 */
typedef struct NimbleStatusDef
{
	long		status;			/* 0 ends the list */
	bool		retry;
	const char *hint;
} NimbleStatusDef;

/*
 * What nimble_wait_batch polls: a resource answering one row per batch
 * key, a boolean column that turns true when the batch is done, and a
 * column worth quoting while it is not.
 */
typedef struct NimbleWaitDef
{
	const char *resource;
	const char *done_column;
	const char *progress_column;
} NimbleWaitDef;

/*
 * The limit an API documents for a key: requests in any window of
 * window_s seconds (throttle.c holds requests to it).
 */
typedef struct NimbleRateLimitDef
{
	int			requests;
	double		window_s;
} NimbleRateLimitDef;

typedef struct NimbleApiDef
{
	const char *name;			/* the server's "api" option */
	const char *title;			/* in messages: "Nimble API request ..." */
	const char *default_url;	/* NULL: the server needs a url */
	const char *example_url;	/* for hints */
	NimbleRateLimitDef rate_limit;	/* documented; {0, 0}: none */
	const char *auth_header;	/* printf format taking the api key */
	const char *key_source;		/* where a user finds the key, for hints */
	const NimbleResourceDef *resources;
	int			nresources;
	const char *const *error_message_paths; /* where error bodies say why */
	const NimbleStatusDef *statuses;	/* beyond the common rules, or NULL */
	const NimbleWaitDef *wait;	/* NULL: nimble_wait_batch cannot wait here */
} NimbleApiDef;

/* The registry (registry.c) */
/* the descriptions, one per file of this folder; all_apis lists them */
extern const NimbleApiDef nimble_api_def_nimble;
extern const NimbleApiDef nimble_api_def_scrape;
extern const NimbleApiDef nimble_api_def_factcheck;

extern const NimbleApiDef *nimble_api_lookup(const char *name);
extern const NimbleApiDef *nimble_api_default(void);
extern char *nimble_api_names(void);
extern char *nimble_resource_names(const NimbleApiDef *api);
extern char *nimble_all_resource_names(void);
extern bool nimble_any_api_has_resource(const char *name);
extern const NimbleResourceDef *nimble_resource_lookup(const NimbleApiDef *api,
													   const char *name);
extern const NimbleColumnDef *nimble_column_lookup(const NimbleResourceDef *res,
												   const char *name);
extern const NimbleStatusDef *nimble_api_status(const NimbleApiDef *api,
												long status);

#endif							/* NIMBLE_API_H */
