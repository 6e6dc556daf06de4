/*-------------------------------------------------------------------------
 *
 * http_internal.h
 *		  What http.c (transfers) and http_failures.c (what failures mean)
 *		  share: a request's and a session's insides.
 *
 * Nothing else includes this: the rest of nimble_fdw sees the opaque
 * NimbleHttpSession and NimbleHttpRequest of nimble_fdw.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_HTTP_INTERNAL_H
#define NIMBLE_HTTP_INTERNAL_H

#include <curl/curl.h>

#include "lib/stringinfo.h"

#include "nimble_fdw.h"

/*
 * The most response header bytes taken from one response.  The APIs send a
 * few hundred; libcurl's own limits (100 kB a header, 300 kB in all) fail
 * with errors that say "out of memory" or nothing useful.
 */
#define NIMBLE_MAX_HEADER_BYTES (64 * 1024)

typedef enum RequestState
{
	REQ_IDLE,
	REQ_RUNNING,				/* attached to the multi handle */
	REQ_BACKOFF,				/* waiting to be tried again */
	REQ_DONE
} RequestState;

struct NimbleHttpRequest
{
	NimbleHttpSession *session;
	NimbleHttpRequest *next;	/* in the session's list */
	StringInfoData url;
	StringInfoData path;		/* for messages: the url without the base */
	bool		not_found_is_empty;
	RequestState state;
	CURL	   *easy;
	int			attempts;
	TimestampTz retry_at;		/* REQ_BACKOFF: when to try (again) */
	TimestampTz throttled_since;	/* first held back by the rate limit */
	TimestampTz launched_at;	/* the last attempt left */
	bool		from_cache;
	bool		booked;			/* in flight in its budget (throttle.c) */
	bool		held_by_limit;	/* REQ_BACKOFF: by the rate limit, not a retry */

	/* filled while the transfer runs (by callbacks: no palloc, no throw) */
	CURLcode	result;
	long		status;
	char	   *body;			/* malloc'd, NUL-terminated */
	size_t		len;
	size_t		cap;
	bool		too_big;
	bool		out_of_memory;
	bool		in_headers;		/* a status line came, the blank line not yet */
	bool		headers_too_big;	/* more than NIMBLE_MAX_HEADER_BYTES */
	size_t		header_bytes;	/* of the current response */
	char		errbuf[CURL_ERROR_SIZE];
	char		retry_after[64];
	char		retry_after_ms[32];
	char		content_type[64];
	char		location[256];
	NimbleRateHeaders rate;		/* ratelimit-* of the current response */
};

struct NimbleHttpSession
{
	const NimbleServerOptions *opts;
	const NimbleApiDef *api;
	const NimbleResourceDef *res;	/* what is asked for: for messages */
	struct curl_slist *headers; /* malloc'd by curl; carries the key */
	uint64		key_hash;		/* tells cache entries of keys apart */
	uint64		budget;			/* the key's on the url's host (throttle.c) */
	int			progress;		/* the scan's slot in nimble_scans, or -1 */
	char	   *secret;			/* the key, and the whole value of the */
	char	   *secret_header;	/* header that carries it: for redaction */
	NimbleScanStats *stats;
	NimbleServerStats *global; /* the backend's figures for the server */
	struct NimbleServerState *state;	/* whose stats global is */
	NimbleHttpRequest *requests;
	MemoryContext cxt;
	MemoryContextCallback cleanup;
};

/* http_failures.c: what a failed request means, for http.c */
extern bool nimble_http_retryable(NimbleHttpRequest *req);
pg_noreturn extern void nimble_http_report_transport_error(NimbleHttpRequest *req);
pg_noreturn extern void nimble_http_report_http_error(NimbleHttpRequest *req);

#endif							/* NIMBLE_HTTP_INTERNAL_H */
