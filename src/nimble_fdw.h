/*-------------------------------------------------------------------------
 *
 * nimble_fdw.h
 *		  Shared declarations of nimble_fdw, a foreign data wrapper for
 *		  batch APIs (Nimble's first).
 *
 * What the engine's files share: options, routes, planning, keys, paging,
 * the per-server state, HTTP, execution.  src/README.md maps every file
 * and follows one query through them; the API descriptions have their own
 * header (api/api.h), the JSON module too (json/json_value.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_FDW_H
#define NIMBLE_FDW_H

#include "postgres.h"

#include "common/jsonapi.h"
#include "api/api.h"
#include "compat.h"
#include "json/json_value.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "nodes/pathnodes.h"
#include "nodes/plannodes.h"
#include "utils/hsearch.h"
#include "utils/numeric.h"
#include "utils/relcache.h"

/* ----------------------------------------------------------------
 *		Routes: how a scan finds its rows (columns.c)
 * ----------------------------------------------------------------
 */

/* How a scan finds its rows. */
typedef enum NimbleRoute
{
	NIMBLE_ROUTE_KEYED,			/* keyed endpoint, one request per key */
	NIMBLE_ROUTE_LIST_KEYED,	/* list walk for keys, then one request each */
	NIMBLE_ROUTE_LIST_ROWS		/* list walk; items are rows (+ enrichment) */
} NimbleRoute;

/* Which response of a scan a column's value comes from. */
typedef enum NimbleSource
{
	NIMBLE_SRC_NONE,			/* not available on this route */
	NIMBLE_SRC_LIST,			/* the list item */
	NIMBLE_SRC_KEYED,			/* a row of the keyed response */
	NIMBLE_SRC_EXTRA			/* the per-row enrichment response */
} NimbleSource;

extern const char *nimble_column_path(const NimbleResourceDef *res,
									  const char *colname, const char *field,
									  NimbleRoute route, NimbleSource *source);

/* ----------------------------------------------------------------
 *		Options (options.c)
 * ----------------------------------------------------------------
 */


/* the top of max_concurrency's range: connections one backend keeps */
#define NIMBLE_MAX_CONCURRENCY 64

typedef struct NimbleServerOptions
{
	char	   *url;			/* base url, version prefix included, no
								 * trailing slash */
	const NimbleApiDef *api;	/* the "api" option's description */
	int			timeout_ms;
	int			connect_timeout_ms;
	int			page_size;		/* 0: let the API choose */
	int			max_retries;
	int			max_concurrency;
	int64		max_response_bytes;
	char	   *ca_bundle;		/* CA certificates file, or NULL */
	bool		tls_verify;		/* verify the peer and host name */
	double		max_requests_per_second;	/* -1: not set; 0: no limit at all */
	int			cache_ttl;		/* seconds; 0: no cache */
	int			analyze_requests;	/* ANALYZE's request budget per table */
	Oid			serverid;
} NimbleServerOptions;

typedef struct NimbleTableOptions
{
	Oid			relid;
	Oid			serverid;
	const NimbleApiDef *api;
	const NimbleResourceDef *resource;
} NimbleTableOptions;

extern void nimble_get_server_options(ForeignServer *server,
									  NimbleServerOptions *opts);
extern ForeignServer *nimble_get_table_options(Oid relid, NimbleTableOptions *opts,
											   NimbleServerOptions *sopts);
extern char *nimble_scan_credentials(ForeignServer *server,
									 const NimbleServerOptions *opts,
									 Oid userid);
extern char *nimble_get_column_field(Oid relid, AttrNumber attnum);
extern char *nimble_get_api_key(ForeignServer *server, Oid userid);

/* ----------------------------------------------------------------
 *		Security (security.c)
 * ----------------------------------------------------------------
 */

extern void nimble_security_init(void);
extern void nimble_option_changes_init(void);
extern void nimble_key_join_init(void);
extern bool nimble_server_option_is_set(const char *name);
extern void nimble_check_allowed_host(const char *url, ForeignServer *server);

/* ----------------------------------------------------------------
 *		Rate limit and response cache (throttle.c, cache.c)
 * ----------------------------------------------------------------
 */

/* what a response said of the key's limit: the ratelimit-* headers */
#define NIMBLE_RATE_HEADER_LEN 64
typedef struct NimbleRateHeaders
{
	char		limit[NIMBLE_RATE_HEADER_LEN];
	char		remaining[NIMBLE_RATE_HEADER_LEN];
	char		reset[NIMBLE_RATE_HEADER_LEN];
	char		policy[NIMBLE_RATE_HEADER_LEN];
} NimbleRateHeaders;

extern uint64 nimble_budget_id(const char *url, uint64 key_hash);
extern long nimble_throttle_acquire(uint64 id, const char *url,
									const NimbleApiDef *api, double rate,
									TimestampTz now, TimestampTz *held_until);
extern void nimble_throttle_done(uint64 id);
extern void nimble_throttle_hold(uint64 id, TimestampTz until);
extern void nimble_throttle_observe(uint64 id, const NimbleRateHeaders *h,
									bool answered, TimestampTz now);
extern Size nimble_throttle_shmem_size(void);
extern void nimble_throttle_shmem_attach(void *area, bool init);

/* the scans in flight, for nimble_scans (progress.c) */
#define NIMBLE_SCAN_ROUTE_LEN 160
typedef enum NimbleScanWait
{
	NIMBLE_SCAN_WAIT_NONE,		/* decoding, or its rows being used */
	NIMBLE_SCAN_WAIT_API,		/* for the API's answers */
	NIMBLE_SCAN_WAIT_RATE_LIMIT /* for the key's request budget */
} NimbleScanWait;
typedef struct NimbleScanProgress
{
	int64		requests_done;	/* retries included */
	int64		requests_expected;	/* for the whole scan; -1: not known */
	int64		rows;
	int64		bytes;
	int64		retries;
	NimbleScanWait waiting;
} NimbleScanProgress;
typedef struct NimbleScanInfo
{
	int			pid;
	Oid			roleid;
	Oid			dbid;
	char		server[NAMEDATALEN];
	char		resource[NAMEDATALEN];
	char		route[NIMBLE_SCAN_ROUTE_LEN];
	TimestampTz started_at;
	NimbleScanProgress figures;
} NimbleScanInfo;
struct NimbleScanStats;			/* below */
extern Size nimble_progress_shmem_size(void);
extern void nimble_progress_shmem_attach(void *area, bool init);
extern int	nimble_progress_begin(const char *server, const char *resource,
								  const char *route);
extern void nimble_progress_update(int h, const NimbleScanProgress *figures);
extern void nimble_progress_waiting(int h, NimbleScanWait waiting,
									const struct NimbleScanStats *stats);
extern void nimble_progress_end(int h);
extern int	nimble_progress_snapshot(NimbleScanInfo **out);

/* shared memory, with shared_preload_libraries (shmem.c) */
extern void nimble_shmem_init(void);
extern bool nimble_shmem_active(void);
extern struct LWLock *nimble_shmem_lock(void);
extern void nimble_shmem_unlock(struct LWLock *lock);

/* a budget as nimble_rate_limits shows it */
#define NIMBLE_BUDGET_HOST_LEN 128
typedef struct NimbleBudgetInfo
{
	char		host[NIMBLE_BUDGET_HOST_LEN];
	bool		shared;
	int32		limit;			/* 0: no window */
	double		window_s;
	int32		in_window;
	int32		in_flight;
	TimestampTz hold_until;		/* 0: none */
	bool		from_api;
	bool		answered;
	TimestampTz last_used;
} NimbleBudgetInfo;
extern int	nimble_throttle_snapshot(NimbleBudgetInfo *out, int max);

extern void nimble_cache_init(void);
extern Size nimble_cache_size_bytes(void);

/* the response cache in shared memory, when preloaded (shared_cache.c) */
extern Size nimble_shared_cache_size(Size bytes);
extern void nimble_shared_cache_attach(void *area, Size bytes,
									   struct LWLock *lock, bool init);
extern bool nimble_shared_cache_active(void);
extern char *nimble_shared_cache_lookup(uint64 hash, Oid serverid, uint64 key_hash,
										const char *url, int ttl_s,
										TimestampTz now, size_t *len);
extern void nimble_shared_cache_store(uint64 hash, Oid serverid, uint64 key_hash,
									  const char *url, TimestampTz sent_at,
									  const char *body, size_t len);
extern int64 nimble_shared_cache_clear(void);
extern void nimble_shared_cache_usage(int64 *entries, int64 *bytes);
extern char *nimble_cache_lookup(Oid serverid, uint64 key_hash, const char *url,
								 int ttl_s, TimestampTz now, size_t *len);
extern void nimble_cache_store(Oid serverid, uint64 key_hash, const char *url,
							   TimestampTz sent_at, const char *body, size_t len);
extern void nimble_cache_usage(int64 *entries, int64 *bytes);

/* ----------------------------------------------------------------
 *		Statistics of the backend, per server (stats.c)
 * ----------------------------------------------------------------
 */

#define NIMBLE_STATS_MAX_STATUS 16

typedef struct NimbleServerStats
{
	Oid			serverid;		/* hash key */
	int64		scans;
	int64		requests;		/* retries included */
	int64		pages;
	int64		bytes;
	int64		retries;
	int64		cache_hits;
	int64		connections;	/* new connections opened */
	int64		errors;			/* error responses and failed transfers */
	int			nstatus;
	struct
	{
		long		status;		/* HTTP status; 0: the transfer failed */
		int64		count;
	}			by_status[NIMBLE_STATS_MAX_STATUS];
	int64		other_errors;	/* statuses beyond the table */
	int64		network_wait_us;	/* waiting for responses */
	int64		rate_limit_wait_us; /* held back by max_requests_per_second */
	TimestampTz since;
} NimbleServerStats;

extern void nimble_stats_add_status(NimbleServerStats *stats, long status, int64 n);
extern void nimble_stats_error(NimbleServerStats *stats, long status);

/* ----------------------------------------------------------------
 *		What a backend keeps per server (server_state.c)
 * ----------------------------------------------------------------
 */

#define NIMBLE_MAX_LEARNED 16

typedef struct NimbleServerState
{
	Oid			serverid;		/* hash key */
	bool		recheck;		/* its catalog row changed: look again */
	NimbleServerStats stats;	/* nimble_stats (stats.c) */
	NimbleServerStats flushed;	/* of stats, what shared memory has */
	int			nlearned;		/* what scans saw (estimates.c) */
	struct
	{
		char		name[NAMEDATALEN];	/* a resource, or a list's path */
		double		value;
	}			learned[NIMBLE_MAX_LEARNED];
} NimbleServerState;

typedef struct NimbleServerStateWalk
{
	bool		started;
	HASH_SEQ_STATUS seq;
} NimbleServerStateWalk;

extern void nimble_server_state_init(void);
extern NimbleServerState *nimble_server_state(Oid serverid);
extern void nimble_server_states_begin(NimbleServerStateWalk *walk);
extern NimbleServerState *nimble_server_states_next(NimbleServerStateWalk *walk);
extern double *nimble_server_state_learned(NimbleServerState *state,
										   const char *name, bool create);
extern void nimble_server_state_flush(NimbleServerState *state);

/* what backends share of each server, when preloaded (shared_servers.c) */
extern Size nimble_shared_servers_size(void);
extern void nimble_shared_servers_attach(void *area, bool init);
extern bool nimble_shared_servers_active(void);
extern void nimble_shared_stats_add(Oid serverid, const NimbleServerStats *counted,
									NimbleServerStats *flushed);
extern bool nimble_shared_stats_read(Oid serverid, NimbleServerStats *out);
extern int	nimble_shared_stats_servers(Oid **ids);
extern void nimble_shared_stats_reset(TimestampTz now);
extern void nimble_shared_learn(Oid serverid, const char *name, double value);
extern bool nimble_shared_learned(Oid serverid, const char *name, double *value);

/* ----------------------------------------------------------------
 *		Learned row counts (estimates.c)
 * ----------------------------------------------------------------
 */

extern void nimble_learn_list_total(Oid serverid, const NimbleEndpoint *list,
									double total);
extern void nimble_learn_rows_per_key(Oid serverid, const char *resource,
									  double rows, double nkeys);
extern void nimble_learned_list_total(Oid serverid, const NimbleEndpoint *list,
									  double *value);
extern void nimble_learned_rows_per_key(Oid serverid, const char *resource,
										double *value);

/* ----------------------------------------------------------------
 *		Planning (quals.c)
 * ----------------------------------------------------------------
 */


/*
 * How the keys of a condition are used (keys.c): sent to the API as the
 * values' text, where that is the column type's equality; or matched in
 * the list walk with that equality.
 */
typedef enum NimbleKeyMode
{
	NIMBLE_KEYS_EXACT,			/* text, varchar, a deterministic collation */
	NIMBLE_KEYS_TYPED			/* any other type with a hashable "=" */
} NimbleKeyMode;

/* A set of keys: expressions, each a scalar or an array of keys. */
typedef struct NimbleKeySet
{
	List	   *exprs;			/* Expr nodes evaluated at execution */
	List	   *is_array;		/* parallel list of int: 1 = array of keys */
	List	   *clauses;		/* the RestrictInfos they come from */
	double		nkeys;			/* estimated number of keys */
	NimbleKeyMode mode;
	Oid			opno;			/* the "=" of every clause */
	Oid			collation;		/* its input collation */
} NimbleKeySet;

/* Planner state for one foreign relation (baserel->fdw_private). */
typedef struct NimblePlanState
{
	NimbleTableOptions table;
	NimbleServerOptions server;
	AttrNumber	key_attno;		/* the key column, or InvalidAttrNumber */
	Bitmapset  *attrs_used;		/* columns the query reads */
	bool		keyed_covers;	/* keyed endpoint provides every column used */
	bool		needs_extra;	/* a used column needs the enrichment request */
	NimbleKeySet *keys;			/* pushed restriction keys, or NULL */
	const char *unpushed;		/* why a key condition was not pushed, or NULL */
	List	   *local_conds;	/* RestrictInfos evaluated locally */
	double		est_list_items; /* estimated items of the list */
	double		est_rows_per_key;	/* estimated rows from one keyed request */
} NimblePlanState;

/*
 * What the plan tells the executor (fdw_private of the ForeignScan),
 * written and read by nimble_private_to_list / nimble_private_from_list
 * only: a node list indexed by NimbleScanPrivateIndex.
 */
typedef struct NimblePlanPrivate
{
	NimbleRoute route;
	List	   *is_array;		/* int per fdw_exprs entry: an array of keys */
	List	   *retrieved_attrs;	/* int: the attnums to fill */
	bool		needs_extra;	/* an enrichment request per row */
	char	   *key_column;		/* the key column's name */
	AttrNumber	key_attno;		/* its attnum, or InvalidAttrNumber */
	bool		parameterized;	/* the keys come from outer rows */
	int			row_bound;		/* most rows needed, 0 = all */
	NimbleKeyMode key_mode;
	Oid			key_opno;		/* TYPED: the "=" that matches */
	Oid			key_collation;
	char	   *unpushed;		/* why a key condition was not pushed, or NULL */
} NimblePlanPrivate;

enum NimbleScanPrivateIndex
{
	NimblePrivateRoute,			/* Integer: NimbleRoute */
	NimblePrivateKeysArray,		/* List of Integer */
	NimblePrivateRetrieved,		/* List of Integer */
	NimblePrivateNeedsExtra,	/* Boolean */
	NimblePrivateKeyColumn,		/* String */
	NimblePrivateKeyAttno,		/* Integer */
	NimblePrivateParameterized, /* Boolean */
	NimblePrivateRowBound,		/* Integer */
	NimblePrivateKeyMode,		/* Integer: NimbleKeyMode */
	NimblePrivateKeyOpno,		/* Integer: an Oid */
	NimblePrivateKeyCollation,	/* Integer: an Oid */
	NimblePrivateUnpushed,		/* String, "" for none */
	NimblePrivateCount			/* the length of the list */
};

extern List *nimble_private_to_list(const NimblePlanPrivate *priv);
extern void nimble_private_from_list(List *list, NimblePlanPrivate *priv);

extern void nimble_get_rel_size(PlannerInfo *root, RelOptInfo *baserel,
								Oid foreigntableid);
extern void nimble_get_paths(PlannerInfo *root, RelOptInfo *baserel,
							 Oid foreigntableid);
extern Cost nimble_requests_cost(const NimblePlanState *ps, double requests,
								 double rounds);
extern NimbleKeySet *nimble_join_keys(PlannerInfo *root, RestrictInfo *rinfo,
									  RelOptInfo *baserel);
extern ForeignScan *nimble_get_plan(PlannerInfo *root, RelOptInfo *baserel,
									Oid foreigntableid, ForeignPath *best_path,
									List *tlist, List *scan_clauses,
									Plan *outer_plan);

/* ----------------------------------------------------------------
 *		ANALYZE (analyze.c)
 * ----------------------------------------------------------------
 */

extern bool nimble_analyze_foreign_table(Relation relation,
										 AcquireSampleRowsFunc *func,
										 BlockNumber *totalpages);

/* Decoding a response body: the JSON module, src/json/ (json_value.h) */

/* ----------------------------------------------------------------
 *		Values to Datums (decode.c)
 * ----------------------------------------------------------------
 */

typedef struct NimbleColumnConv NimbleColumnConv;

extern NimbleColumnConv *nimble_conv_create(Oid typid, int32 typmod,
											bool count_elements);
extern Datum nimble_conv_value(NimbleColumnConv *conv,
							   const NimbleJsonValue *value, bool *isnull);
extern Datum nimble_conv_string(NimbleColumnConv *conv, const char *str,
								bool *isnull);



/* ----------------------------------------------------------------
 *		HTTP (http.c)
 * ----------------------------------------------------------------
 */

typedef struct NimbleScanStats
{
	int64		requests;		/* HTTP requests sent, retries included */
	int64		retries;
	int64		pages;			/* list pages walked */
	int64		bytes;			/* response body bytes received */
	int64		cache_hits;		/* requests answered by the cache */
	int64		rate_limit_wait_us; /* time requests were held back */
	int64		connections;	/* new connections opened (others reused) */
	int			http_version;	/* highest HTTP major version seen, or 0 */
} NimbleScanStats;

/* What ANALYZE's sample saw of the list (nimble_scan_seen). */
typedef struct NimbleScanSeen
{
	double		list_total;		/* the list's stated total, or -1 */
	bool		list_complete;	/* the walk reached the end of the list */
	int64		units_listed;	/* distinct ids the walk met */
	int64		units_read;		/* of which read into the sample */
	int64		requests;		/* requests started, retries not counted */
} NimbleScanSeen;

typedef struct NimbleHttpSession NimbleHttpSession;
typedef struct NimbleHttpRequest NimbleHttpRequest;

/* What became of a finished request. */
typedef enum NimbleHttpOutcome
{
	NIMBLE_HTTP_OK,
	NIMBLE_HTTP_NOT_FOUND		/* 404 on a keyed request: no rows */
} NimbleHttpOutcome;

extern void nimble_http_init(void);
extern void nimble_http_session_set_progress(NimbleHttpSession *session, int h);
extern NimbleHttpSession *nimble_http_session_create(MemoryContext cxt,
													 const NimbleServerOptions *opts,
													 const NimbleApiDef *api,
													 const NimbleResourceDef *res,
													 const char *api_key,
													 NimbleScanStats *stats);
extern NimbleHttpRequest *nimble_http_request_create(NimbleHttpSession *session);
extern void nimble_http_start(NimbleHttpRequest *req, const char *path,
							  bool not_found_is_empty);
extern NimbleHttpOutcome nimble_http_finish(NimbleHttpRequest *req,
											MemoryContext owner,
											char **body, int *len);
extern void nimble_http_count_page(NimbleHttpSession *session);
extern void nimble_http_remember(NimbleHttpRequest *req, const char *body,
								 int len);
extern void nimble_http_cancel(NimbleHttpRequest *req);
extern bool nimble_http_busy(NimbleHttpRequest *req);
extern const char *nimble_http_path(NimbleHttpRequest *req);
extern char *nimble_http_redact(NimbleHttpSession *session, const char *text);

/* response-body buffers kept for reuse (body_pool.c) */
extern char *nimble_body_take(size_t *cap);
extern void nimble_body_give(char *data, size_t cap);
extern void nimble_body_pool_init(void);

/* ----------------------------------------------------------------
 *		Paging a list endpoint (paging.c)
 * ----------------------------------------------------------------
 */

typedef struct NimblePager
{
	MemoryContext cxt;
	const NimbleEndpoint *ep;
	int			page_size;		/* 0: the API's choice */
	int			cursor_slot;	/* page-level values in the page's doc */
	int			has_next_slot;
	int			total_slot;
	char	   *cursor;			/* where the next page starts; NULL: first */
	HTAB	   *seen_cursors;
	int64		offset;			/* offset paging: items before the next page */
	bool		done;			/* the last page has been read */
	double		total;			/* the last page's total, or -1 */
} NimblePager;

extern NimblePager *nimble_pager_create(MemoryContext cxt, const NimbleEndpoint *ep,
										int page_size, NimbleDocSpec *spec);
extern void nimble_pager_reset(NimblePager *pager);
extern char *nimble_pager_next_path(NimblePager *pager);
extern const char *nimble_pager_advance(NimblePager *pager, const NimbleDoc *page);
extern char *nimble_endpoint_path(const NimbleEndpoint *ep, const char *key,
								  bool encode);

/* ----------------------------------------------------------------
 *		Keys (keys.c)
 * ----------------------------------------------------------------
 */

typedef struct NimbleKeyMatch NimbleKeyMatch;

extern int	nimble_normalize_keys(char **keys, int n);
extern int	nimble_find_key(char **keys, int n, const char *key);
extern NimbleKeyMatch *nimble_keymatch_create(MemoryContext cxt, Oid opno,
											  Oid collation, Oid coltype,
											  int32 coltypmod, Oid keytype);
extern void nimble_keymatch_set_keys(NimbleKeyMatch *m, const Datum *values,
									 int n);
extern int	nimble_keymatch_count(const NimbleKeyMatch *m);
extern bool nimble_keymatch_test(NimbleKeyMatch *m, const char *id);

/* ----------------------------------------------------------------
 *		Execution (scan.c)
 * ----------------------------------------------------------------
 */

typedef struct NimbleScan NimbleScan;

extern NimbleScan *nimble_scan_create(MemoryContext parent,
									  const NimbleTableOptions *table,
									  const NimbleServerOptions *server,
									  const char *api_key,
									  TupleDesc tupdesc,
									  NimbleRoute route,
									  List *retrieved_attrs,
									  bool needs_extra);
extern void nimble_scan_set_keys(NimbleScan *scan, List *keys);
extern void nimble_scan_set_typed_keys(NimbleScan *scan, NimbleKeyMatch *match);
extern void nimble_scan_set_row_bound(NimbleScan *scan, int64 bound);
extern void nimble_scan_set_sample(NimbleScan *scan, int64 budget);
extern char **nimble_scan_keys(NimbleScan *scan, int *nkeys, int *current);
extern void nimble_scan_seen(NimbleScan *scan, NimbleScanSeen *seen);
extern bool nimble_scan_next(NimbleScan *scan, Datum *values, bool *nulls);
extern void nimble_scan_rewind(NimbleScan *scan);
extern NimbleScanStats *nimble_scan_stats(NimbleScan *scan);

/* EXPLAIN (nimble_fdw.c) */
struct ExplainState;
extern void nimble_explain_scan_stats(const NimbleScanStats *stats,
									  const NimbleServerOptions *server,
									  bool list_pages, struct ExplainState *es);
extern void nimble_scan_end(NimbleScan *scan);

/* ----------------------------------------------------------------
 *		IMPORT FOREIGN SCHEMA (import.c)
 * ----------------------------------------------------------------
 */

extern List *nimble_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid);

#endif							/* NIMBLE_FDW_H */
