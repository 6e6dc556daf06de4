/*-------------------------------------------------------------------------
 *
 * http.c
 *		  HTTP for nimble_fdw: libcurl multi, waiting on the latch, retries.
 *
 * One curl multi handle lives for the backend, so keep-alive connections
 * (and TLS sessions, and HTTP/2 streams) are reused by every scan.  A scan
 * owns a session: its requests, the header list that carries the key, and a
 * reset callback on the scan's memory context that detaches whatever is
 * still in flight, so an ERROR or a cancel anywhere leaves nothing behind.
 *
 * Transfers advance only inside nimble_http_finish(), which waits on the
 * backend's latch and curl's sockets together: a query cancel or a
 * statement_timeout ends the wait at once and is reported by
 * CHECK_FOR_INTERRUPTS() with its own SQLSTATE.  libcurl callbacks never
 * throw: they fill malloc'd buffers and set flags, and errors are raised
 * after curl has returned.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "http_internal.h"

#define NIMBLE_MAX_SOCKETS 256
#define NIMBLE_EASY_POOL 64
#ifndef NIMBLE_FDW_VERSION
#error "NIMBLE_FDW_VERSION comes from the Makefile (META.json's version)"
#endif
#define NIMBLE_USER_AGENT "nimble_fdw/" NIMBLE_FDW_VERSION

/* backoff as the official SDKs: 0.5 s doubling to 8 s, 25% jitter */
#define NIMBLE_BACKOFF_START_MS 500
#define NIMBLE_BACKOFF_MAX_MS 8000
#define NIMBLE_RETRY_AFTER_MAX_MS 60000

/*
 * Count n more of a figure kept twice: for the scan (EXPLAIN ANALYZE) and for
 * the backend's server statistics (nimble_stats), which share field names.
 */
#define COUNT(session, field, n) \
	do { \
		(session)->stats->field += (n); \
		(session)->global->field += (n); \
	} while (0)

/* The backend's multi handle and the sockets/timer it asked us to watch. */
typedef struct SocketWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} SocketWatch;

static CURLM *nimble_multi = NULL;
static SocketWatch watched[NIMBLE_MAX_SOCKETS];
static int	nwatched = 0;
static bool multi_timer_set = false;	/* curl wants a call at the deadline */
static TimestampTz multi_deadline;
static CURL *easy_pool[NIMBLE_EASY_POOL];
static int	neasy_pool = 0;

/* ----------------------------------------------------------------
 *		libcurl callbacks: never palloc, never throw
 * ----------------------------------------------------------------
 */

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nwatched; i++)
	{
		if (watched[i].fd == fd)
			break;
	}
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nwatched)
			watched[i] = watched[--nwatched];
		return 0;
	}
	if (i == nwatched)
	{
		if (nwatched == NIMBLE_MAX_SOCKETS)
			return -1;			/* curl fails this transfer */
		nwatched++;
	}
	watched[i].fd = fd;
	watched[i].what = what;
	return 0;
}

/* curl's timer is one-shot: keep it as a deadline, consumed when it fires */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	multi_timer_set = (timeout_ms >= 0);
	if (multi_timer_set)
		multi_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 timeout_ms);
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	NimbleHttpRequest *req = (NimbleHttpRequest *) userdata;
	size_t		n = size * nmemb;

	if (req->len + n > (size_t) req->session->opts->max_response_bytes)
	{
		req->too_big = true;
		return 0;				/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (req->body == NULL)
		req->body = nimble_body_take(&req->cap);
	if (req->len + n + 1 > req->cap)
	{
		size_t		newcap = Max(Max(req->cap * 2, req->len + n + 1), 16384);
		char	   *p = realloc(req->body, newcap);

		if (p == NULL)
		{
			req->out_of_memory = true;
			return 0;
		}
		req->body = p;
		req->cap = newcap;
	}
	memcpy(req->body + req->len, data, n);
	req->len += n;
	req->body[req->len] = '\0';
	return n;
}

/* Copy a header's value (trimmed) into a fixed buffer. */
static void
copy_header_value(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	while (srclen > 0 && (*src == ' ' || *src == '\t'))
		src++, srclen--;
	while (srclen > 0 && (src[srclen - 1] == '\r' || src[srclen - 1] == '\n' ||
						  src[srclen - 1] == ' '))
		srclen--;
	if (srclen >= dstlen)
		srclen = dstlen - 1;
	memcpy(dst, src, srclen);
	dst[srclen] = '\0';
}

static bool
header_is(const char *line, size_t len, const char *name)
{
	size_t		n = strlen(name);

	return len > n && line[n] == ':' && pg_strncasecmp(line, name, n) == 0;
}

/*
 * Keep a ratelimit-* header (the IETF drafts' names, or the older
 * x-ratelimit-* ones) for throttle.c.
 */
static void
rate_header(NimbleRateHeaders *rate, const char *line, size_t len)
{
	size_t		skip = (line[0] == 'x' || line[0] == 'X') ? 12 : 10;
	const char *name = line + skip;
	size_t		rest = len - skip;

	if (header_is(name, rest, "limit"))
		copy_header_value(rate->limit, sizeof(rate->limit), name + 6, rest - 6);
	else if (header_is(name, rest, "remaining"))
		copy_header_value(rate->remaining, sizeof(rate->remaining),
						  name + 10, rest - 10);
	else if (header_is(name, rest, "reset"))
		copy_header_value(rate->reset, sizeof(rate->reset), name + 6, rest - 6);
	else if (header_is(name, rest, "policy"))
		copy_header_value(rate->policy, sizeof(rate->policy), name + 7, rest - 7);
}

static size_t
header_cb(char *line, size_t size, size_t nitems, void *userdata)
{
	NimbleHttpRequest *req = (NimbleHttpRequest *) userdata;
	size_t		len = size * nitems;

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		/* a new response (after a 100 Continue, say): forget the last */
		req->retry_after[0] = '\0';
		req->retry_after_ms[0] = '\0';
		req->content_type[0] = '\0';
		req->location[0] = '\0';
		memset(&req->rate, 0, sizeof(req->rate));
		req->header_bytes = 0;
		req->in_headers = true;
	}
	req->header_bytes += len;
	if (req->header_bytes > NIMBLE_MAX_HEADER_BYTES)
	{
		req->headers_too_big = true;
		return 0;				/* curl aborts the transfer */
	}
	if (len <= 2 && (line[0] == '\r' || line[0] == '\n'))
		req->in_headers = false;	/* the blank line: the body follows */
	else if (header_is(line, len, "retry-after-ms"))
		copy_header_value(req->retry_after_ms, sizeof(req->retry_after_ms),
						  line + 15, len - 15);
	else if (header_is(line, len, "retry-after"))
		copy_header_value(req->retry_after, sizeof(req->retry_after),
						  line + 12, len - 12);
	else if (header_is(line, len, "location"))
		copy_header_value(req->location, sizeof(req->location),
						  line + 9, len - 9);
	else if (header_is(line, len, "content-type"))
		copy_header_value(req->content_type, sizeof(req->content_type),
						  line + 13, len - 13);
	else if (len > 10 && (pg_strncasecmp(line, "ratelimit-", 10) == 0 ||
						  pg_strncasecmp(line, "x-ratelimit-", 12) == 0))
		rate_header(&req->rate, line, len);
	return len;
}

/* ----------------------------------------------------------------
 *		Handles
 * ----------------------------------------------------------------
 */

/*
 * Initialise libcurl for the backend (once, before any thread could).
 * Called from _PG_init.
 */
void
nimble_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_CREATE_EXECUTION),
				 errmsg("could not initialize libcurl")));
}

static CURLM *
get_multi(void)
{
	if (nimble_multi == NULL)
	{
		CURLM	   *multi = curl_multi_init();

		if (multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
		curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
		/*
		 * Keep every connection a scan opened for the next one.  curl's
		 * default cache is 4 x the transfers still attached, so the end of
		 * a scan of 8 concurrent HTTP/1.1 transfers would close some.
		 */
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) NIMBLE_MAX_CONCURRENCY);
		nimble_multi = multi;
	}
	return nimble_multi;
}

static CURL *
easy_get(void)
{
	CURL	   *easy;

	if (neasy_pool > 0)
	{
		easy = easy_pool[--neasy_pool];
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return easy;
}

static void
easy_put(CURL *easy)
{
	if (neasy_pool < NIMBLE_EASY_POOL)
		easy_pool[neasy_pool++] = easy;
	else
		curl_easy_cleanup(easy);
}

/*
 * Take a request off the multi handle, whatever its state, and out of its
 * budget's requests in flight.  Never throws.
 */
static void
detach(NimbleHttpRequest *req)
{
	if (req->easy)
	{
		curl_multi_remove_handle(nimble_multi, req->easy);
		easy_put(req->easy);
		req->easy = NULL;
	}
	if (req->booked)
	{
		nimble_throttle_done(req->session->budget);
		req->booked = false;
	}
}

static void
free_body(NimbleHttpRequest *req)
{
	nimble_body_give(req->body, req->cap);
	req->body = NULL;
	req->len = 0;
	req->cap = 0;
}

/* Reset callback of the session's context: runs on success and on error. */
static void
session_cleanup(void *arg)
{
	NimbleHttpSession *session = (NimbleHttpSession *) arg;

	for (NimbleHttpRequest *req = session->requests; req; req = req->next)
	{
		detach(req);
		free_body(req);
		req->state = REQ_IDLE;
	}
	curl_slist_free_all(session->headers);
	session->headers = NULL;
	/* the cluster's counters get what the scan counted (when preloaded) */
	nimble_server_state_flush(session->state);
	/* no copy of the key outlives the scan in freed memory */
	if (session->secret)
		explicit_bzero(session->secret, strlen(session->secret));
	if (session->secret_header)
		explicit_bzero(session->secret_header, strlen(session->secret_header));
}

static void
append_header(NimbleHttpSession *session, const char *line)
{
	struct curl_slist *list = curl_slist_append(session->headers, line);

	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	session->headers = list;
}

/*
 * A session for one scan of res on a server with opts: the headers that
 * carry api_key (for api's auth header), the figures to count into (stats,
 * and the server's nimble_stats), and a reset callback on cxt that detaches
 * every request still in flight and frees what libcurl allocated.
 */
NimbleHttpSession *
nimble_http_session_create(MemoryContext cxt, const NimbleServerOptions *opts,
						   const NimbleApiDef *api, const NimbleResourceDef *res,
						   const char *api_key, NimbleScanStats *stats)
{
	NimbleHttpSession *session;
	char	   *auth;
	char	   *value;

	(void) get_multi();
	session = MemoryContextAllocZero(cxt, sizeof(NimbleHttpSession));
	session->opts = opts;
	session->api = api;
	session->res = res;
	session->stats = stats;
	session->state = nimble_server_state(opts->serverid);
	session->global = &session->state->stats;
	session->global->scans++;
	session->cxt = cxt;
	/* owner of the header list first, so that nothing can leak it */
	session->cleanup.func = session_cleanup;
	session->cleanup.arg = session;
	MemoryContextRegisterResetCallback(cxt, &session->cleanup);

	append_header(session, "Accept: application/json");
	auth = psprintf(api->auth_header, api_key);
	append_header(session, auth);
	session->key_hash = hash_bytes_extended((const unsigned char *) api_key,
											strlen(api_key), 0);
	session->budget = nimble_budget_id(opts->url, session->key_hash);
	session->progress = -1;
	/* what redaction looks for: the key, and the header's whole value */
	session->secret = MemoryContextStrdup(cxt, api_key);
	value = strchr(auth, ':');
	value = value ? value + 1 + strspn(value + 1, " ") : auth;
	session->secret_header = MemoryContextStrdup(cxt, value);
	explicit_bzero(auth, strlen(auth));
	pfree(auth);
	return session;
}

/* Tell waits of session to show in nimble_scans' slot h (progress.c). */
void
nimble_http_session_set_progress(NimbleHttpSession *session, int h)
{
	session->progress = h;
}

/* A request of session, idle, to be started with nimble_http_start(). */
NimbleHttpRequest *
nimble_http_request_create(NimbleHttpSession *session)
{
	NimbleHttpRequest *req = MemoryContextAllocZero(session->cxt,
													sizeof(NimbleHttpRequest));
	MemoryContext oldcxt = MemoryContextSwitchTo(session->cxt);

	initStringInfo(&req->url);
	initStringInfo(&req->path);
	MemoryContextSwitchTo(oldcxt);
	req->session = session;
	req->next = session->requests;
	session->requests = req;
	return req;
}

/* Forget what an earlier attempt received. */
static void
reset_response(NimbleHttpRequest *req)
{
	req->len = 0;
	req->too_big = false;
	req->out_of_memory = false;
	req->in_headers = false;
	req->headers_too_big = false;
	req->header_bytes = 0;
	req->result = CURLE_OK;
	req->status = 0;
	req->errbuf[0] = '\0';
	req->retry_after[0] = '\0';
	req->retry_after_ms[0] = '\0';
	req->content_type[0] = '\0';
	req->location[0] = '\0';
	memset(&req->rate, 0, sizeof(req->rate));
}

/* Put the request (again) on the multi handle. */
static void
launch(NimbleHttpRequest *req, TimestampTz now)
{
	const NimbleServerOptions *opts = req->session->opts;
	CURL	   *easy = easy_get();
	CURLMcode	mrc;

	reset_response(req);

	curl_easy_setopt(easy, CURLOPT_URL, req->url.data);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->session->headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, NIMBLE_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) opts->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) opts->connect_timeout_ms);
	/* never follow a redirect: it could carry the key to another host */
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* batch ids are path segments: never let curl squash "/../" */
	curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	if (opts->ca_bundle)
		curl_easy_setopt(easy, CURLOPT_CAINFO, opts->ca_bundle);
	if (!opts->tls_verify)
	{
		curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	mrc = curl_multi_add_handle(nimble_multi, easy);
	if (mrc != CURLM_OK)
	{
		easy_put(easy);
		detach(req);			/* out of the budget's requests in flight */
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_CREATE_EXECUTION),
				 errmsg("could not start HTTP request: %s",
						curl_multi_strerror(mrc))));
	}
	req->easy = easy;
	req->state = REQ_RUNNING;
	req->launched_at = now;
	req->attempts++;
	COUNT(req->session, requests, 1);
}

/*
 * A wait for the rate limit that would end after the statement's own
 * deadline fails now, saying why, rather than sit until statement_timeout
 * cancels it with no word of the limit.
 */
static void
check_wait_fits(NimbleHttpRequest *req, TimestampTz now, long wait_ms,
				TimestampTz held_until)
{
	TimestampTz deadline;

	if (!get_timeout_active(STATEMENT_TIMEOUT))
		return;
	deadline = get_timeout_finish_time(STATEMENT_TIMEOUT);
	if (TimestampTzPlusMilliseconds(now, wait_ms) <= deadline)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("%s API rate limit lets GET %s start only in %.1f s, after statement_timeout",
					req->session->api->title, req->path.data, wait_ms / 1000.0),
			 held_until ?
			 errdetail("The API said the key's budget is spent until then (a 429's Retry-After, or ratelimit-remaining 0 until ratelimit-reset).") :
			 errdetail("The key's window of requests is full until then (the API's documented limit, or its ratelimit-policy)."),
			 errhint("Run the query when the budget is back, raise statement_timeout, or make fewer requests (narrower WHERE on the key, cache_ttl).")));
}

/*
 * Launch the request if the key's request budget (throttle.c) lets it
 * start now; else hold it back (as if backing off) until it may.  Returns
 * whether it was launched.
 */
static bool
try_launch(NimbleHttpRequest *req, TimestampTz now)
{
	NimbleHttpSession *session = req->session;
	TimestampTz held_until;
	long		wait_ms = nimble_throttle_acquire(session->budget,
												  session->opts->url,
												  session->api,
												  session->opts->max_requests_per_second,
												  now, &held_until);

	if (wait_ms > 0)
	{
		check_wait_fits(req, now, wait_ms, held_until);
		if (req->throttled_since == 0)
			req->throttled_since = now;
		req->retry_at = TimestampTzPlusMilliseconds(now, wait_ms);
		req->state = REQ_BACKOFF;
		req->held_by_limit = true;
		return false;
	}
	req->booked = true;
	req->held_by_limit = false;
	if (req->throttled_since != 0)
	{
		COUNT(session, rate_limit_wait_us, now - req->throttled_since);
		req->throttled_since = 0;
	}
	launch(req, now);
	return true;
}

/*
 * Start (or queue behind the rate limit) a GET of the server's url + path,
 * answered from the cache when cache_ttl allows.  not_found_is_empty: a
 * 404 means no rows (a keyed request), not an error.  The transfer goes on
 * while the caller does other work; nimble_http_finish() waits for it.
 */
void
nimble_http_start(NimbleHttpRequest *req, const char *path,
				  bool not_found_is_empty)
{
	NimbleHttpSession *session = req->session;
	TimestampTz now;

	nimble_http_cancel(req);
	resetStringInfo(&req->url);
	appendStringInfo(&req->url, "%s%s", req->session->opts->url, path);
	resetStringInfo(&req->path);
	appendStringInfoString(&req->path, path);
	req->not_found_is_empty = not_found_is_empty;
	req->attempts = 0;
	req->throttled_since = 0;
	req->from_cache = false;
	now = GetCurrentTimestamp();

	if (session->opts->cache_ttl > 0)
	{
		size_t		len;
		char	   *body = nimble_cache_lookup(session->opts->serverid,
											   session->key_hash, req->url.data,
											   session->opts->cache_ttl, now,
											   &len);

		if (body)
		{
			reset_response(req);
			req->body = body;
			req->len = len;
			req->cap = len + 1;
			req->status = 200;
			req->state = REQ_DONE;
			req->from_cache = true;
			COUNT(session, cache_hits, 1);
			return;
		}
	}
	(void) try_launch(req, now);
}

/* A page of the list was walked. */
void
nimble_http_count_page(NimbleHttpSession *session)
{
	COUNT(session, pages, 1);
}

/*
 * The body of req, just received and decoded without fault, may answer the
 * same request again within the server's cache_ttl.
 */
void
nimble_http_remember(NimbleHttpRequest *req, const char *body, int len)
{
	NimbleHttpSession *session = req->session;

	if (session->opts->cache_ttl <= 0 || req->from_cache)
		return;
	nimble_cache_store(session->opts->serverid, session->key_hash,
					   req->url.data, req->launched_at, body, (size_t) len);
}

/* Stop req, wherever it is, and forget its response. */
void
nimble_http_cancel(NimbleHttpRequest *req)
{
	detach(req);
	free_body(req);
	req->state = REQ_IDLE;
}

/* Is req still running, or waiting to be tried again? */
bool
nimble_http_busy(NimbleHttpRequest *req)
{
	return req->state == REQ_RUNNING || req->state == REQ_BACKOFF;
}

/* req's path, below the server's url: what messages name. */
const char *
nimble_http_path(NimbleHttpRequest *req)
{
	return req->path.data;
}

/* The server's wish, from retry-after-ms or Retry-After, or -1. */
static long
server_retry_delay_ms(NimbleHttpRequest *req)
{
	char	   *end;
	double		v;

	if (req->retry_after_ms[0])
	{
		v = strtod(req->retry_after_ms, &end);
		if (end != req->retry_after_ms && *end == '\0' && v >= 0)
			return (long) v;
	}
	if (req->retry_after[0])
	{
		time_t		when;

		v = strtod(req->retry_after, &end);
		if (end != req->retry_after && *end == '\0' && v >= 0)
			return (long) (v * 1000);
		when = curl_getdate(req->retry_after, NULL);
		if (when != (time_t) -1)
			return Max(0, (long) (when - time(NULL)) * 1000);
	}
	return -1;
}

static long
backoff_delay_ms(NimbleHttpRequest *req)
{
	long		delay = server_retry_delay_ms(req);
	long		base;

	if (delay >= 0 && delay <= NIMBLE_RETRY_AFTER_MAX_MS)
		return delay;
	base = NIMBLE_BACKOFF_START_MS;
	for (int i = 1; i < req->attempts && base < NIMBLE_BACKOFF_MAX_MS; i++)
		base *= 2;
	base = Min(base, NIMBLE_BACKOFF_MAX_MS);
	return (long) (base * (1.0 - 0.25 * pg_prng_double(&pg_global_prng_state)));
}

/* Count new connections and the protocol of a finished transfer. */
static void
note_connection(NimbleHttpRequest *req, CURL *easy)
{
	long		connects = 0;
	long		version = 0;
	int			major;

	if (curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
		COUNT(req->session, connections, connects);
	if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK)
		return;
	switch (version)
	{
		case CURL_HTTP_VERSION_1_0:
		case CURL_HTTP_VERSION_1_1:
			major = 1;
			break;
		case CURL_HTTP_VERSION_2_0:
			major = 2;
			break;
#ifdef CURL_HTTP_VERSION_3
		case CURL_HTTP_VERSION_3:
			major = 3;
			break;
#endif
		default:
			major = 0;
			break;
	}
	req->session->stats->http_version = Max(req->session->stats->http_version, major);
}

/* Collect finished transfers; schedule retries.  Never throws. */
static void
process_completions(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(nimble_multi, &left)) != NULL)
	{
		NimbleHttpRequest *req = NULL;
		CURL	   *easy = msg->easy_handle;
		TimestampTz now;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
		req->result = msg->data.result;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
		note_connection(req, easy);
		detach(req);
		COUNT(req->session, bytes, req->len);
		if (req->result != CURLE_OK)
			nimble_stats_error(req->session->global, 0);
		else if (req->status >= 300)
			nimble_stats_error(req->session->global, req->status);

		now = GetCurrentTimestamp();
		/* after detach: the budget's requests in flight are the others */
		nimble_throttle_observe(req->session->budget, &req->rate,
								req->result == CURLE_OK && req->status > 0, now);

		if (nimble_http_retryable(req) && req->attempts <= req->session->opts->max_retries)
		{
			long		delay_ms = backoff_delay_ms(req);

			req->retry_at = TimestampTzPlusMilliseconds(now, delay_ms);
			req->state = REQ_BACKOFF;
			req->held_by_limit = false;
			COUNT(req->session, retries, 1);
			/* a 429 speaks of the key: hold all its requests as long */
			if (req->status == 429)
				nimble_throttle_hold(req->session->budget, req->retry_at);
		}
		else
			req->state = REQ_DONE;
	}
}

/* ----------------------------------------------------------------
 *		Waiting
 * ----------------------------------------------------------------
 */

/*
 * What pg_stat_activity shows while a scan waits: NimbleHttp for the API's
 * answers, NimbleRateLimit when nothing of the scan is on the wire and it
 * waits for the key's budget (on 15 and 16 both are "Extension").
 */
static uint32
wait_event_for(bool for_rate_limit)
{
	static uint32 wait_http = 0;
	static uint32 wait_rate_limit = 0;

	if (wait_http == 0)
	{
		wait_rate_limit = nimble_wait_event_new("NimbleRateLimit");
		wait_http = nimble_wait_event_new("NimbleHttp");
	}
	return for_rate_limit ? wait_rate_limit : wait_http;
}

/*
 * Sleep until curl's sockets are ready, its timer fires, timeout_ms passes,
 * or the latch is set, then let curl act on what happened.  wait_event is
 * what pg_stat_activity shows meanwhile.
 */
static void
wait_and_act(long timeout_ms, uint32 wait_event)
{
	WaitEvent	occurred[NIMBLE_MAX_SOCKETS + 2];
	WaitEventSet *volatile set = NULL;
	int			nready;
	bool		latch_set = false;
	int			running;

	PG_TRY();
	{
		set = nimble_create_wait_event_set(nwatched + 2);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < nwatched; i++)
		{
			uint32		events = 0;

			if (watched[i].what & CURL_POLL_IN)
				events |= WL_SOCKET_READABLE;
			if (watched[i].what & CURL_POLL_OUT)
				events |= WL_SOCKET_WRITEABLE;
			AddWaitEventToSet(set, events, watched[i].fd, NULL, NULL);
		}
		nready = WaitEventSetWait(set, timeout_ms, occurred, lengthof(occurred),
								  wait_event);
	}
	PG_FINALLY();
	{
		/* an epoll fd must not outlive an error */
		if (set)
			FreeWaitEventSet(set);
	}
	PG_END_TRY();

	for (int i = 0; i < nready; i++)
	{
		int			flags = 0;

		if (occurred[i].events & WL_LATCH_SET)
		{
			latch_set = true;
			continue;
		}
		if (occurred[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (occurred[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		curl_multi_socket_action(nimble_multi, occurred[i].fd, flags, &running);
	}
	process_completions();

	if (latch_set)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Drive all transfers until req is done, retries included. */
static void
wait_for(NimbleHttpRequest *req)
{
	NimbleHttpSession *session = req->session;
	TimestampTz started;

	if (req->state != REQ_RUNNING && req->state != REQ_BACKOFF)
		return;
	started = GetCurrentTimestamp();
	while (req->state == REQ_RUNNING || req->state == REQ_BACKOFF)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		timeout = -1;
		int			running;
		bool		on_wire = false;
		bool		held = false;

		if (multi_timer_set)
			timeout = Max(0, TimestampDifferenceMilliseconds(now, multi_deadline));

		/* start the retries that are due; sleep no longer than the next */
		for (NimbleHttpRequest *r = session->requests; r; r = r->next)
		{
			long		wait_ms;

			if (r->state == REQ_RUNNING)
				on_wire = true;
			if (r->state != REQ_BACKOFF)
				continue;
			if (r->retry_at <= now && try_launch(r, now))
			{
				timeout = 0;
				continue;
			}
			/* not due yet, or held back again by the rate limit */
			held |= r->held_by_limit;
			wait_ms = Max(1, TimestampDifferenceMilliseconds(now, r->retry_at));
			if (timeout < 0 || wait_ms < timeout)
				timeout = wait_ms;
		}

		if (timeout == 0)
		{
			if (multi_timer_set && now >= multi_deadline)
				multi_timer_set = false;
			curl_multi_socket_action(nimble_multi, CURL_SOCKET_TIMEOUT, 0, &running);
			process_completions();
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		/* never sleep unbounded, whatever curl said */
		if (timeout < 0 || timeout > 1000)
			timeout = 1000;
		nimble_progress_waiting(session->progress, held && !on_wire ?
								NIMBLE_SCAN_WAIT_RATE_LIMIT : NIMBLE_SCAN_WAIT_API,
								session->stats);
		wait_and_act(timeout, wait_event_for(held && !on_wire));
	}
	nimble_progress_waiting(session->progress, NIMBLE_SCAN_WAIT_NONE, session->stats);
	session->global->network_wait_us += GetCurrentTimestamp() - started;
}

/* ----------------------------------------------------------------
 *		Results and errors
 * ----------------------------------------------------------------
 */

/* A body handed to a memory context, given back when the context goes. */
typedef struct OwnedBody
{
	MemoryContextCallback cb;
	char	   *data;
	size_t		cap;
} OwnedBody;

static void
release_owned_body(void *arg)
{
	OwnedBody  *owned = (OwnedBody *) arg;

	nimble_body_give(owned->data, owned->cap);
}

/*
 * Wait for req and return its body, which then belongs to owner (freed when
 * owner is reset or deleted).  Failures are raised here; a 404 of a keyed
 * request is NIMBLE_HTTP_NOT_FOUND.
 */
NimbleHttpOutcome
nimble_http_finish(NimbleHttpRequest *req, MemoryContext owner,
				   char **body, int *len)
{
	OwnedBody  *owned;

	wait_for(req);
	Assert(req->state == REQ_DONE);

	if (req->too_big)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s API response to GET %s is larger than max_response_bytes (" INT64_FORMAT " bytes)",
						req->session->api->title, req->path.data, req->session->opts->max_response_bytes),
				 errhint("Raise the server's max_response_bytes option if such responses are expected.")));
	if (req->out_of_memory)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving GET %s", req->path.data)));
	if (req->result != CURLE_OK)
		nimble_http_report_transport_error(req);
	if (req->status == 404 && req->not_found_is_empty)
	{
		free_body(req);
		req->state = REQ_IDLE;
		return NIMBLE_HTTP_NOT_FOUND;
	}
	if (req->status < 200 || req->status > 299)
		nimble_http_report_http_error(req);

	if (req->body == NULL)
	{
		/* an empty body: give the parser an empty string to refuse */
		req->body = malloc(1);
		if (req->body == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		req->body[0] = '\0';
		req->cap = 1;
	}

	/* allocate first: nothing may throw between the hand-over steps */
	owned = MemoryContextAlloc(owner, sizeof(OwnedBody));
	owned->data = req->body;
	owned->cap = req->cap;
	owned->cb.func = release_owned_body;
	owned->cb.arg = owned;
	MemoryContextRegisterResetCallback(owner, &owned->cb);
	*body = req->body;
	*len = (int) req->len;
	req->body = NULL;
	req->len = 0;
	req->cap = 0;
	req->state = REQ_IDLE;
	return NIMBLE_HTTP_OK;
}
