/*-------------------------------------------------------------------------
 *
 * scan.c
 *		  Execution of a nimble_fdw scan: keys -> requests -> pages -> rows.
 *
 * A scan is a stream of units.  A unit is one batch: a key the query gave,
 * or an item of the list endpoint.  A unit may need one request (its keyed
 * response, or the enrichment of a list item); those requests are started
 * ahead of the consumer in a window of max_concurrency units, kept in order,
 * so rows come out in the same order whatever the concurrency.
 *
 * Everything is lazy: the next list page is fetched only when the window
 * needs more units (or, for a list whose items are the rows, only when the
 * executor asks for the next row), so LIMIT stops the requests too.
 *
 * Memory: the scan context holds the plan-derived state; each list page
 * lives in its own context until its last unit is consumed; the response of
 * the unit being read lives in unit_cxt, reset per unit; converted values
 * live in row_cxt, reset per row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/tupdesc.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "nimble_fdw.h"

/* How one column of the tuple is filled. */
typedef struct ColumnBinding
{
	AttrNumber	attnum;
	const char *name;
	NimbleSource source;
	bool		from_key;		/* the unit's key ("$key") */
	int			slot;			/* in the source's row */
	NimbleColumnConv *conv;
} ColumnBinding;

/* A page of the list endpoint, alive while units still point into it. */
typedef struct ListPage
{
	MemoryContext cxt;
	NimbleDoc	doc;
	int			next_item;		/* items before it became units */
	int			refs;			/* units not yet consumed */
} ListPage;

typedef struct Unit
{
	char	   *key;
	ListPage   *page;			/* list page of the item, or NULL */
	int			item;			/* row of the item in page->doc */
	NimbleHttpRequest *req;		/* the unit's request, or NULL */
} Unit;

struct NimbleScan
{
	MemoryContext cxt;
	MemoryContext keys_cxt;		/* the keys: reset when they change */
	MemoryContext unit_cxt;
	MemoryContext row_cxt;
	const NimbleTableOptions *table;
	const NimbleServerOptions *server;
	const NimbleResourceDef *res;
	const NimbleApiDef *api;
	NimbleRoute route;
	bool		needs_extra;
	NimbleScanStats stats;
	NimbleHttpSession *http;

	/* what to read */
	ColumnBinding *bindings;
	int			nbindings;
	const NimbleEndpoint *list_ep;
	const NimbleEndpoint *unit_ep;	/* request per unit, or NULL */
	NimbleDocSpec *list_spec;
	NimbleDocSpec *unit_spec;
	int			list_key_slot;

	/*
	 * keys from the query (has_keys false: no key condition): exact ones as
	 * sorted, unique texts, or typed ones in their matcher
	 */
	bool		has_keys;
	char	  **keys;
	int			nkeys;
	int			next_key;
	bool	   *key_seen;		/* LIST_ROWS: which keys the walk has met */
	int			keys_left;
	NimbleKeyMatch *typed;		/* typed keys, or NULL */

	/* the list walk */
	NimblePager *pager;			/* where the next page starts (paging.c) */
	NimbleHttpRequest *list_req;
	bool		list_req_running;
	bool		list_done;		/* no page more is needed */
	HTAB	   *seen_ids;		/* the ids this walk has listed (IdSeen) */
	List	   *pages;			/* ListPage *, oldest first */

	/* the window of units, in order */
	Unit	   *ring;
	NimbleHttpRequest **ring_reqs;
	int			ring_cap;
	int			ring_head;
	int			ring_count;

	/* the query's LIMIT, if it bounds this scan (0 = none); rows so far */
	int64		row_bound;
	int64		rows_returned;

	/*
	 * ANALYZE's sample: the most requests the scan may start (0: no limit),
	 * the most of them that may be list pages, and every how many listed
	 * units one is read (0: not decided yet).  What was read, for scaling.
	 */
	int64		request_budget;
	int64		list_budget;
	int64		sample_stride;
	int64		requests_started;
	int64		pages_started;
	int64		units_listed;	/* distinct ids the walk met */
	int64		units_opened;	/* units read */
	double		list_total;		/* the list's last stated total, or -1 */
	bool		list_complete;	/* the walk reached the list's end */

	/* the unit being read */
	Unit		cur;
	bool		have_cur;
	NimbleDoc	cur_doc;
	int			cur_row;
	int			cur_nrows;

	/* what this scan saw, for the planner's next estimates */
	double		keyed_units;
	double		keyed_rows;

	/* for conversion error messages */
	const ColumnBinding *err_binding;
	const NimbleJsonValue *err_value;

	/* the scan's slot in nimble_scans (progress.c), or -1 */
	int			progress;
	MemoryContextCallback progress_cb;
	int64		list_items_read;	/* items of the pages read, for the pages to come */
};

/* An id of the list walk, by two 64-bit hashes of its text. */
typedef struct IdSeen
{
	uint64		h[2];
} IdSeen;

static void release_page_ref(NimbleScan *scan, ListPage *page);

/* ----------------------------------------------------------------
 *		Set-up
 * ----------------------------------------------------------------
 */

static NimbleDocSpec *
spec_for_endpoint(const NimbleEndpoint *ep)
{
	return nimble_doc_spec_create(ep->rows, ep->rows_required, ep->rows_single);
}

static void
bind_columns(NimbleScan *scan, TupleDesc tupdesc, List *retrieved_attrs)
{
	ListCell   *lc;
	int			n = 0;

	scan->bindings = palloc0(sizeof(ColumnBinding) * Max(list_length(retrieved_attrs), 1));
	foreach(lc, retrieved_attrs)
	{
		AttrNumber	attnum = lfirst_int(lc);
		Form_pg_attribute attr = TupleDescAttr(tupdesc, attnum - 1);
		ColumnBinding *b = &scan->bindings[n];
		char	   *field = OidIsValid(scan->table->relid)
			? nimble_get_column_field(scan->table->relid, attnum) : NULL;
		const char *path;
		bool		count = false;

		if (attr->attisdropped)
			continue;
		b->attnum = attnum;
		b->name = pstrdup(NameStr(attr->attname));
		path = nimble_column_path(scan->res, b->name, field, scan->route,
								  &b->source);
		if (path == NULL)
		{
			/* the planner chose this route knowing the column is NULL here */
			b->source = NIMBLE_SRC_NONE;
			n++;
			continue;
		}
		if (strcmp(path, "$key") == 0)
			b->from_key = true;
		else
		{
			NimbleDocSpec *spec;

			if (path[0] == '#')
			{
				count = true;
				path++;
			}
			else if (strcmp(path, "$row") == 0)
				path = "";		/* the row object itself */
			spec = (b->source == NIMBLE_SRC_LIST) ? scan->list_spec : scan->unit_spec;
			b->slot = nimble_doc_spec_add_row_path(spec, path);
		}
		b->conv = nimble_conv_create(attr->atttypid, attr->atttypmod, count);
		n++;
	}
	scan->nbindings = n;
}

/* ----------------------------------------------------------------
 *		Progress, for nimble_scans
 * ----------------------------------------------------------------
 */

/* The route as nimble_scans shows it, as EXPLAIN words it. */
static void
progress_route(NimbleScan *scan, char *buf, size_t len)
{
	const NimbleResourceDef *res = scan->res;
	char	   *hole = psprintf("{%s}", res->key_column);

	if (scan->route == NIMBLE_ROUTE_KEYED)
		snprintf(buf, len, "GET %s per key",
				 nimble_endpoint_path(res->keyed, hole, false));
	else if (scan->unit_ep)
		snprintf(buf, len, "GET %s (all pages), then GET %s per %s",
				 nimble_endpoint_path(scan->list_ep, hole, false),
				 nimble_endpoint_path(scan->unit_ep, hole, false), res->unit_noun);
	else
		snprintf(buf, len, "GET %s (all pages)",
				 nimble_endpoint_path(scan->list_ep, hole, false));
}

/*
 * The requests the whole scan will take, retries aside, or -1 while that
 * is not known: the keys of a keyed scan; for a walk, once the list has
 * said its total, its pages (from the items a page held so far) and a
 * request per unit where units have one.  A walk that may stop early (a
 * LIMIT, keys to find, ANALYZE's budget) is not known.
 */
static int64
requests_expected(NimbleScan *scan)
{
	double		pages;

	if (scan->route == NIMBLE_ROUTE_KEYED)
		return scan->has_keys ? scan->nkeys : -1;
	if (scan->row_bound > 0 || scan->has_keys || scan->request_budget > 0)
		return -1;
	if (scan->list_complete)
		pages = scan->stats.pages;
	else if (scan->list_total >= 0 && scan->list_items_read > 0 && scan->stats.pages > 0)
		pages = ceil(scan->list_total /
					 ((double) scan->list_items_read / scan->stats.pages));
	else
		return -1;
	return (int64) pages + (scan->unit_ep ? (int64) scan->list_total : 0);
}

/* Write what the scan has done into its slot. */
static void
publish_progress(NimbleScan *scan)
{
	NimbleScanProgress figures;

	if (scan->progress < 0)
		return;
	figures.requests_done = scan->stats.requests;
	figures.requests_expected = requests_expected(scan);
	figures.rows = scan->rows_returned;
	figures.bytes = scan->stats.bytes;
	figures.retries = scan->stats.retries;
	figures.waiting = NIMBLE_SCAN_WAIT_NONE;
	nimble_progress_update(scan->progress, &figures);
}

/* Reset callback of the scan's context: its slot goes with it. */
static void
end_progress(void *arg)
{
	NimbleScan *scan = (NimbleScan *) arg;

	nimble_progress_end(scan->progress);
	scan->progress = -1;
}

/*
 * A scan of table's resource along route, under parent: the columns of
 * retrieved_attrs bound to where the route reads them, the list walk
 * (unless KEYED), the window of max_concurrency requests, the HTTP session
 * with api_key.  needs_extra: list rows need their enrichment request.
 * Keys, where the route needs them, come with nimble_scan_set_keys() or
 * nimble_scan_set_typed_keys().
 */
NimbleScan *
nimble_scan_create(MemoryContext parent, const NimbleTableOptions *table,
				   const NimbleServerOptions *server, const char *api_key,
				   TupleDesc tupdesc, NimbleRoute route,
				   List *retrieved_attrs, bool needs_extra)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "nimble_fdw scan",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	NimbleScan *scan = palloc0(sizeof(NimbleScan));
	const NimbleApiDef *api = table->api;
	const NimbleResourceDef *res = table->resource;

	scan->cxt = cxt;
	scan->list_total = -1;
	scan->keys_cxt = AllocSetContextCreate(cxt, "nimble_fdw keys",
										   ALLOCSET_SMALL_SIZES);
	scan->unit_cxt = AllocSetContextCreate(cxt, "nimble_fdw response",
										   ALLOCSET_DEFAULT_SIZES);
	scan->row_cxt = AllocSetContextCreate(cxt, "nimble_fdw row",
										  ALLOCSET_DEFAULT_SIZES);
	scan->table = table;
	scan->server = server;
	scan->res = res;
	scan->api = api;
	scan->route = route;
	scan->needs_extra = needs_extra && route == NIMBLE_ROUTE_LIST_ROWS;

	if (route != NIMBLE_ROUTE_KEYED)
	{
		/* the planner refuses such a plan (nimble_get_plan) */
		if (res->list == NULL)
			elog(ERROR, "nimble_fdw: \"%s\" has no list endpoint", res->name);
		scan->list_ep = res->list;
		scan->list_spec = spec_for_endpoint(scan->list_ep);
		scan->list_key_slot = nimble_doc_spec_add_row_path(scan->list_spec,
														   scan->list_ep->item_key);
		scan->pager = nimble_pager_create(cxt, scan->list_ep, server->page_size,
										  scan->list_spec);
		scan->list_req = NULL;
	}
	if (route == NIMBLE_ROUTE_LIST_ROWS)
		scan->unit_ep = scan->needs_extra ? res->extra : NULL;
	else
		scan->unit_ep = res->keyed;
	if (scan->unit_ep)
		scan->unit_spec = spec_for_endpoint(scan->unit_ep);

	bind_columns(scan, tupdesc, retrieved_attrs);

	scan->http = nimble_http_session_create(cxt, server, api, res, api_key,
											&scan->stats);

	/* seen in nimble_scans from now until the scan's memory goes */
	{
		ForeignServer *fs = GetForeignServer(server->serverid);
		char		route_buf[NIMBLE_SCAN_ROUTE_LEN];

		progress_route(scan, route_buf, sizeof(route_buf));
		scan->progress = nimble_progress_begin(fs->servername, res->name, route_buf);
		scan->progress_cb.func = end_progress;
		scan->progress_cb.arg = scan;
		MemoryContextRegisterResetCallback(cxt, &scan->progress_cb);
		nimble_http_session_set_progress(scan->http, scan->progress);
	}
	if (scan->list_ep)
		scan->list_req = nimble_http_request_create(scan->http);

	/*
	 * Units without a request are read one at a time; units with one keep
	 * up to max_concurrency requests in flight.
	 */
	scan->ring_cap = scan->unit_ep ? server->max_concurrency : 1;
	scan->ring = palloc0(sizeof(Unit) * scan->ring_cap);
	scan->ring_reqs = palloc0(sizeof(NimbleHttpRequest *) * scan->ring_cap);
	if (scan->unit_ep)
	{
		for (int i = 0; i < scan->ring_cap; i++)
			scan->ring_reqs[i] = nimble_http_request_create(scan->http);
	}
	MemoryContextSwitchTo(oldcxt);
	return scan;
}

/* What the scan has done so far, for EXPLAIN ANALYZE. */
NimbleScanStats *
nimble_scan_stats(NimbleScan *scan)
{
	return &scan->stats;
}

/* Forget which keys the list walk has met, for a new walk. */
static void
reset_key_filter(NimbleScan *scan)
{
	if (!scan->has_keys || scan->route == NIMBLE_ROUTE_KEYED)
		return;
	if (scan->typed == NULL)
	{
		memset(scan->key_seen, 0, sizeof(bool) * Max(scan->nkeys, 1));
		scan->keys_left = scan->nkeys;
	}
	/*
	 * An exact walk stops as soon as every key was met (each key is one
	 * id); a typed one reads the whole list, as one key may match many
	 * ids.  With no keys at all, both stop at once.
	 */
	if (scan->nkeys == 0)
		scan->list_done = true;
}

/*
 * The exact keys of the query's condition, as texts: normalized as
 * nimble_normalize_keys says (sorted, unique, no ids that cannot be asked
 * for), so that they are asked for once each.
 */
void
nimble_scan_set_keys(NimbleScan *scan, List *keys)
{
	MemoryContext oldcxt;
	ListCell   *lc;
	int			n = 0;

	/* a nested loop sets new keys per outer row: keep only the latest */
	MemoryContextReset(scan->keys_cxt);
	oldcxt = MemoryContextSwitchTo(scan->keys_cxt);

	scan->has_keys = true;
	scan->typed = NULL;
	scan->keys = palloc(sizeof(char *) * Max(list_length(keys), 1));
	foreach(lc, keys)
		scan->keys[n++] = pstrdup(lfirst(lc));
	n = nimble_normalize_keys(scan->keys, n);
	scan->nkeys = n;
	scan->next_key = 0;
	scan->key_seen = palloc(sizeof(bool) * Max(n, 1));
	reset_key_filter(scan);
	MemoryContextSwitchTo(oldcxt);
	publish_progress(scan);		/* the requests it expects are known now */
}

/*
 * Typed keys (keys.c): the list walk keeps the items whose id matches one
 * of the matcher's keys by the column type's equality.  The matcher stays
 * the caller's; it is told its keys before each call.
 */
void
nimble_scan_set_typed_keys(NimbleScan *scan, NimbleKeyMatch *match)
{
	Assert(scan->route != NIMBLE_ROUTE_KEYED);
	scan->has_keys = true;
	scan->typed = match;
	scan->nkeys = nimble_keymatch_count(match);
	reset_key_filter(scan);
}

/* A list walk with keys: is this item's key one of them? */
static bool
key_wanted(NimbleScan *scan, const char *key)
{
	int			i;

	if (scan->typed)
		return nimble_keymatch_test(scan->typed, key);
	i = nimble_find_key(scan->keys, scan->nkeys, key);
	if (i < 0 || scan->key_seen[i])
		return false;
	scan->key_seen[i] = true;
	if (--scan->keys_left == 0)
		scan->list_done = true;
	return true;
}

/*
 * Has this walk listed the id before?  A list that repeats one (an API
 * that misbehaves, or an offset-paged list that shifted while it was
 * read) gives it once, the first time: a keyed request can only give it
 * once, and every route must give the same rows.  Ids are remembered by
 * 128 bits of hash, 16 bytes each.
 */
static bool
id_listed_before(NimbleScan *scan, const char *id)
{
	IdSeen		seen;
	size_t		len = strlen(id);
	bool		found;

	if (scan->seen_ids == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(IdSeen);
		ctl.entrysize = sizeof(IdSeen);
		ctl.hcxt = scan->cxt;
		scan->seen_ids = hash_create("nimble_fdw listed ids", 256, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	seen.h[0] = hash_bytes_extended((const unsigned char *) id, len, 0);
	seen.h[1] = hash_bytes_extended((const unsigned char *) id, len,
									UINT64CONST(0x9E3779B97F4A7C15));
	(void) hash_search(scan->seen_ids, &seen, HASH_ENTER, &found);
	return found;
}

/* ----------------------------------------------------------------
 *		Requests
 * ----------------------------------------------------------------
 */

/* May the scan start another request (ANALYZE's budget)? */
static bool
budget_left(NimbleScan *scan)
{
	return scan->request_budget <= 0 ||
		scan->requests_started < scan->request_budget;
}

/* May it start another list page? */
static bool
list_budget_left(NimbleScan *scan)
{
	return budget_left(scan) &&
		(scan->list_budget <= 0 || scan->pages_started < scan->list_budget);
}

static void
start_list_request(NimbleScan *scan)
{
	char	   *path = nimble_pager_next_path(scan->pager);

	nimble_http_start(scan->list_req, path, false);
	scan->requests_started++;
	scan->pages_started++;
	scan->list_req_running = true;
	pfree(path);
}

/*
 * Report a response that parsed badly; never returns.  The detail may quote
 * the body, which may quote the request's credentials: it is redacted.
 */
static void
report_bad_body(NimbleScan *scan, NimbleDocStatus status,
				const char *path, const char *detail)
{
	detail = nimble_http_redact(scan->http, detail);
	if (status == NIMBLE_DOC_BAD_JSON)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_STRING_FORMAT),
				 errmsg("%s API returned an invalid JSON body for GET %s", scan->api->title, path),
				 errdetail("%s", detail),
				 errhint("The API or a proxy in between answered with something else than JSON; try again later.")));
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("%s API returned an unexpected response for GET %s", scan->api->title, path),
			 errdetail("%s", detail),
			 errhint("The API's response format may have changed; please report this to the nimble_fdw maintainers.")));
}

static void
protocol_error(NimbleScan *scan, const char *path, const char *detail)
{
	report_bad_body(scan, NIMBLE_DOC_BAD_SHAPE, path, detail);
}

/*
 * ANALYZE, once the first page is in: read every how many listed units
 * one, so that the units the budget can pay for are spread evenly over
 * the part of the list its pages can reach (all of it, in most accounts),
 * rather than being the newest ones.  Units without a request of their
 * own cost nothing: all are read.
 */
static void
choose_sample_stride(NimbleScan *scan, int page_items)
{
	double		reach;
	double		pages;
	double		slots;

	if (scan->unit_ep == NULL || page_items <= 0)
	{
		scan->sample_stride = 1;
		return;
	}
	reach = (double) scan->list_budget * page_items;
	if (scan->list_total >= 0)
		reach = Min(reach, scan->list_total);
	pages = Max(ceil(reach / page_items), 1);
	slots = Max(scan->request_budget - pages, 1);
	scan->sample_stride = (int64) Max(ceil(reach / slots), 1);
}

/* Wait for the list page in flight, decode it, and queue it. */
static void
finish_list_request(NimbleScan *scan)
{
	ListPage   *page;
	MemoryContext cxt;
	char	   *body;
	int			len;
	char	   *detail;
	NimbleDocStatus status;
	const char *path = nimble_http_path(scan->list_req);
	const char *problem;

	cxt = AllocSetContextCreate(scan->cxt, "nimble_fdw list page",
								ALLOCSET_DEFAULT_SIZES);
	page = MemoryContextAllocZero(cxt, sizeof(ListPage));
	page->cxt = cxt;
	page->doc.cxt = cxt;
	/* queue it first: rewinding or ending the scan frees it from here on */
	scan->pages = lappend(scan->pages, page);
	scan->list_req_running = false;

	(void) nimble_http_finish(scan->list_req, cxt, &body, &len);
	nimble_http_count_page(scan->http);
	status = nimble_doc_parse(scan->list_spec, body, len, &page->doc, &detail);
	if (status != NIMBLE_DOC_OK)
		report_bad_body(scan, status, path, detail);
	nimble_http_remember(scan->list_req, body, len);

	problem = nimble_pager_advance(scan->pager, &page->doc);
	if (problem)
		protocol_error(scan, path, problem);
	if (scan->pager->total >= 0)
	{
		scan->list_total = scan->pager->total;
		nimble_learn_list_total(scan->table->serverid, scan->list_ep,
								scan->pager->total);
	}
	if (scan->pager->done)
	{
		scan->list_done = true;
		scan->list_complete = true;
	}
	if (scan->request_budget > 0 && scan->sample_stride == 0)
		choose_sample_stride(scan, page->doc.nrows);
	scan->list_items_read += page->doc.nrows;
	publish_progress(scan);
}

/* ----------------------------------------------------------------
 *		Units
 * ----------------------------------------------------------------
 */

/*
 * The key of a list item, as text that lives as long as its page; a list
 * item without one is malformed.
 */
static char *
item_key(NimbleScan *scan, ListPage *page, int item)
{
	NimbleJsonValue *v = &page->doc.rows[item * page->doc.row_slots + scan->list_key_slot];
	MemoryContext oldcxt;
	char	   *key;

	if (v->type != JSON_TOKEN_STRING && v->type != JSON_TOKEN_NUMBER)
		protocol_error(scan, scan->list_ep->path,
					   psprintf("An item of the list has no \"%s\".",
								scan->list_ep->item_key));
	oldcxt = MemoryContextSwitchTo(page->cxt);
	key = nimble_json_cstring(v);
	MemoryContextSwitchTo(oldcxt);
	return key;
}

/*
 * The next unit, if one can be had; with may_wait, fetching list pages as
 * needed, else only from what is already here.
 */
static bool
next_unit(NimbleScan *scan, Unit *unit, bool may_wait)
{
	if (scan->route == NIMBLE_ROUTE_KEYED)
	{
		if (scan->next_key >= scan->nkeys)
			return false;
		unit->item = scan->next_key;	/* the key's place, for the key join */
		unit->key = scan->keys[scan->next_key++];
		unit->page = NULL;
		return true;
	}

	for (;;)
	{
		ListPage   *page = scan->pages ? llast(scan->pages) : NULL;

		if (page && page->next_item < page->doc.nrows)
		{
			int			item = page->next_item++;
			char	   *key = item_key(scan, page, item);

			if (id_listed_before(scan, key))
				continue;
			if (scan->has_keys && !key_wanted(scan, key))
				continue;
			/* ANALYZE: one unit in sample_stride */
			if (scan->units_listed++ % Max(scan->sample_stride, 1) != 0)
				continue;
			unit->key = key;
			unit->page = page;
			unit->item = item;
			page->refs++;
			return true;
		}
		if (page && page->refs == 0)
		{
			/* nothing of the newest page is left in use */
			scan->pages = list_delete_last(scan->pages);
			MemoryContextDelete(page->cxt);
			continue;
		}
		if (scan->list_req_running && scan->list_done)
		{
			/* a prefetch that every key was found without */
			nimble_http_cancel(scan->list_req);
			scan->list_req_running = false;
		}
		if (scan->list_req_running)
		{
			/* a page that has arrived is taken at once: no waiting */
			if (!may_wait && nimble_http_busy(scan->list_req))
				return false;
			finish_list_request(scan);
			continue;
		}
		/* fetching ahead without being asked is prefetch_list's call */
		if (scan->list_done || !may_wait)
			return false;
		if (!list_budget_left(scan))
		{
			scan->list_done = true; /* ANALYZE has read all it may */
			return false;
		}
		start_list_request(scan);
	}
}

/*
 * How many units the window may hold.  Under a LIMIT, no more than the rows
 * still needed, less those the current unit still holds: each unit gives at
 * least one row, mostly, so "SELECT * FROM batches LIMIT 10" asks for ten
 * batches' progress, not ten plus a window.  A unit without rows (an empty
 * batch) just leaves room for the next one.
 */
static int
window_size(NimbleScan *scan)
{
	int64		need;

	if (scan->row_bound <= 0)
		return scan->ring_cap;
	need = scan->row_bound - scan->rows_returned;
	if (scan->have_cur)
		need -= scan->cur_nrows - scan->cur_row;
	return (int) Max(Min(need, scan->ring_cap), 0);
}

/* Start the next list page early when the window is about to run dry. */
static void
prefetch_list(NimbleScan *scan)
{
	ListPage   *page = scan->pages ? llast(scan->pages) : NULL;
	int			left = page ? page->doc.nrows - page->next_item : 0;

	/*
	 * Without a LIMIT, a page ahead once fewer than a window's items are
	 * left on this one, so that the window never waits for it.  Under a
	 * LIMIT, only when the units in the window and the items left cannot
	 * give the rows still needed: "LIMIT 3" over pages of 5 asks for one.
	 */
	if (scan->row_bound > 0)
		left += scan->ring_count;
	if (scan->unit_ep && scan->list_ep && !scan->list_done &&
		!scan->list_req_running && left < window_size(scan) &&
		list_budget_left(scan))
		start_list_request(scan);
}

/* Top the window up; with may_wait, make sure it holds at least one unit. */
static void
fill_window(NimbleScan *scan, bool may_wait)
{
	int			size = window_size(scan);

	/* asked for a row beyond the bound: go on, one unit at a time */
	if (size == 0 && may_wait)
		size = 1;
	while (scan->ring_count < size)
	{
		int			pos = (scan->ring_head + scan->ring_count) % scan->ring_cap;
		Unit	   *unit = &scan->ring[pos];

		if (scan->unit_ep && !budget_left(scan))
			break;
		if (!next_unit(scan, unit, may_wait && scan->ring_count == 0))
			break;
		unit->req = NULL;
		if (scan->unit_ep)
		{
			char	   *path = nimble_endpoint_path(scan->unit_ep, unit->key, true);

			unit->req = scan->ring_reqs[pos];
			/* the request keeps its own copy; this one lives per unit */
			nimble_http_start(unit->req, path, true);
			scan->requests_started++;
			pfree(path);
		}
		scan->ring_count++;
	}
	if (scan->route != NIMBLE_ROUTE_KEYED)
		prefetch_list(scan);
}

static void
release_page_ref(NimbleScan *scan, ListPage *page)
{
	if (page == NULL || --page->refs > 0)
		return;
	/* a page is freed once every item became a unit and was consumed */
	if (page->next_item >= page->doc.nrows)
	{
		scan->pages = list_delete_ptr(scan->pages, page);
		MemoryContextDelete(page->cxt);
	}
}

/* Done with the current unit: free its response and its list page. */
static void
release_current(NimbleScan *scan)
{
	if (!scan->have_cur)
		return;
	scan->have_cur = false;
	MemoryContextReset(scan->unit_cxt);
	release_page_ref(scan, scan->cur.page);
}

/*
 * Make the head of the window the current unit.  Returns false when its
 * batch turned out not to exist (404): it has no rows.
 */
static bool
open_unit(NimbleScan *scan)
{
	Unit	   *unit = &scan->ring[scan->ring_head];
	char	   *body;
	int			len;
	char	   *detail;
	NimbleDocStatus status;

	scan->cur = *unit;
	scan->have_cur = true;
	scan->units_opened++;
	scan->ring_head = (scan->ring_head + 1) % scan->ring_cap;
	scan->ring_count--;
	scan->cur_row = 0;

	if (unit->req == NULL)
	{
		scan->cur_nrows = 1;
		return true;
	}

	if (nimble_http_finish(unit->req, scan->unit_cxt, &body, &len) == NIMBLE_HTTP_NOT_FOUND)
		return false;
	scan->cur_doc.cxt = scan->unit_cxt;
	status = nimble_doc_parse(scan->unit_spec, body, len, &scan->cur_doc, &detail);
	if (status != NIMBLE_DOC_OK)
		report_bad_body(scan, status, nimble_http_path(unit->req), detail);
	nimble_http_remember(unit->req, body, len);
	scan->cur_nrows = scan->route == NIMBLE_ROUTE_LIST_ROWS ? 1 : scan->cur_doc.nrows;
	if (scan->route != NIMBLE_ROUTE_LIST_ROWS)
	{
		scan->keyed_units++;
		scan->keyed_rows += scan->cur_doc.nrows;
	}
	return true;
}

/* ----------------------------------------------------------------
 *		Rows
 * ----------------------------------------------------------------
 */

static void
conversion_error_callback(void *arg)
{
	NimbleScan *scan = (NimbleScan *) arg;
	char	   *key;
	char	   *value;

	if (scan->err_binding == NULL)
		return;
	/* both come from a response: redacted, as everything quoted from one */
	key = nimble_http_redact(scan->http, scan->cur.key);
	value = scan->err_value ? nimble_json_value_text(scan->err_value) : scan->cur.key;
	value = nimble_http_redact(scan->http, value);
	if (value && strlen(value) > 100)
		value = psprintf("%.*s...", pg_mbcliplen(value, strlen(value), 100), value);
	if (OidIsValid(scan->table->relid))
		errcontext("column \"%s\" of foreign table \"%s\", %s \"%s\", value \"%s\"",
				   scan->err_binding->name, get_rel_name(scan->table->relid),
				   scan->res->unit_noun, key, value ? value : "");
	else
		errcontext("column \"%s\" of %s, %s \"%s\", value \"%s\"",
				   scan->err_binding->name, scan->res->name,
				   scan->res->unit_noun, key, value ? value : "");
}

static void
fill_row(NimbleScan *scan, Datum *values, bool *nulls)
{
	NimbleJsonValue *list_row = NULL;
	NimbleJsonValue *unit_row = NULL;
	ErrorContextCallback errcb;

	if (scan->cur.page)
		list_row = &scan->cur.page->doc.rows[scan->cur.item * scan->cur.page->doc.row_slots];
	if (scan->cur.req && scan->cur_doc.nrows > 0)
		unit_row = &scan->cur_doc.rows[(scan->route == NIMBLE_ROUTE_LIST_ROWS ? 0 : scan->cur_row) *
									   scan->cur_doc.row_slots];

	errcb.callback = conversion_error_callback;
	errcb.arg = scan;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < scan->nbindings; i++)
	{
		const ColumnBinding *b = &scan->bindings[i];
		int			att = b->attnum - 1;

		scan->err_binding = b;
		scan->err_value = NULL;
		if (b->source == NIMBLE_SRC_NONE)
			nulls[att] = true;
		else if (b->from_key)
			values[att] = nimble_conv_string(b->conv, scan->cur.key, &nulls[att]);
		else
		{
			NimbleJsonValue *row = (b->source == NIMBLE_SRC_LIST) ? list_row : unit_row;

			if (row == NULL)
				nulls[att] = true;
			else
			{
				scan->err_value = &row[b->slot];
				values[att] = nimble_conv_value(b->conv, &row[b->slot], &nulls[att]);
			}
		}
	}
	error_context_stack = errcb.previous;
	scan->err_binding = NULL;
}

/*
 * The next row into values/nulls (all columns start NULL; bound ones are
 * filled).  Returns false at the end of the scan.
 */
bool
nimble_scan_next(NimbleScan *scan, Datum *values, bool *nulls)
{
	MemoryContext oldcxt;

	MemoryContextReset(scan->row_cxt);
	for (;;)
	{
		if (scan->have_cur && scan->cur_row < scan->cur_nrows)
		{
			oldcxt = MemoryContextSwitchTo(scan->row_cxt);
			fill_row(scan, values, nulls);
			MemoryContextSwitchTo(oldcxt);
			scan->cur_row++;
			scan->rows_returned++;
			if ((scan->rows_returned & 1023) == 0)
				publish_progress(scan);
			return true;
		}
		release_current(scan);

		oldcxt = MemoryContextSwitchTo(scan->cxt);
		fill_window(scan, true);
		MemoryContextSwitchTo(oldcxt);
		if (scan->ring_count == 0)
			return false;
		if (!open_unit(scan))
			scan->cur_nrows = 0;
		publish_progress(scan);
		/* keep the window full while this unit's rows are read */
		oldcxt = MemoryContextSwitchTo(scan->cxt);
		fill_window(scan, false);
		MemoryContextSwitchTo(oldcxt);
	}
}

/* Start over: drop what is in flight and what was read. */
void
nimble_scan_rewind(NimbleScan *scan)
{
	ListCell   *lc;

	release_current(scan);
	for (int i = 0; i < scan->ring_count; i++)
	{
		Unit	   *unit = &scan->ring[(scan->ring_head + i) % scan->ring_cap];

		if (unit->req)
			nimble_http_cancel(unit->req);
	}
	scan->ring_head = 0;
	scan->ring_count = 0;
	if (scan->list_req)
		nimble_http_cancel(scan->list_req);
	scan->list_req_running = false;
	foreach(lc, scan->pages)
		MemoryContextDelete(((ListPage *) lfirst(lc))->cxt);
	list_free(scan->pages);
	scan->pages = NIL;
	scan->list_done = false;
	if (scan->pager)
		nimble_pager_reset(scan->pager);
	if (scan->seen_ids)
	{
		hash_destroy(scan->seen_ids);
		scan->seen_ids = NULL;
	}
	scan->next_key = 0;
	scan->rows_returned = 0;
	scan->units_listed = 0;
	reset_key_filter(scan);
}

/*
 * The most rows the query will ask for (its LIMIT, see the planner): a cap
 * on prefetching, never on the answer.
 */
void
nimble_scan_set_row_bound(NimbleScan *scan, int64 bound)
{
	scan->row_bound = bound;
}

/*
 * Make the scan ANALYZE's sample: at most budget requests (retries not
 * counted), of which at most half list pages when units need requests of
 * their own, the units spread over the list (choose_sample_stride).  Once
 * the budget is spent the scan ends with what it has.
 */
void
nimble_scan_set_sample(NimbleScan *scan, int64 budget)
{
	Assert(budget > 0 && scan->route != NIMBLE_ROUTE_KEYED);
	scan->request_budget = budget;
	scan->list_budget = scan->unit_ep ? Max(budget / 2, 1) : budget;
}

/*
 * A keyed scan's keys in the order it asks for them (sorted and unique, as
 * nimble_scan_set_keys left them), and the place among them of the key
 * whose rows nimble_scan_next gave last (-1 before the first row): every
 * key before it is done.  For the key join's memory limit.
 */
char	  **
nimble_scan_keys(NimbleScan *scan, int *nkeys, int *current)
{
	Assert(scan->route == NIMBLE_ROUTE_KEYED);
	*nkeys = scan->nkeys;
	*current = scan->have_cur ? scan->cur.item : -1;
	return scan->keys;
}

/* What a sample saw of the list, for ANALYZE's totals. */
void
nimble_scan_seen(NimbleScan *scan, NimbleScanSeen *seen)
{
	seen->list_total = scan->list_total;
	seen->list_complete = scan->list_complete;
	seen->units_listed = scan->units_listed;
	seen->units_read = scan->units_opened;
	seen->requests = scan->requests_started;
}

/* Free the scan now rather than with the query: detaches all transfers. */
void
nimble_scan_end(NimbleScan *scan)
{
	if (scan->keyed_units > 0)
		nimble_learn_rows_per_key(scan->table->serverid, scan->res->name,
								  scan->keyed_rows, scan->keyed_units);
	MemoryContextDelete(scan->cxt);
}
