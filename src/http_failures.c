/*-------------------------------------------------------------------------
 *
 * http_failures.c
 *		  What a failed request means: its words, SQLSTATE, hint, retry.
 *
 * Two tables decide everything about a failure: one for transfers that
 * failed (libcurl's codes), one for HTTP error statuses, which an API's
 * description may add to (api.h).  A retry is decided from the same row as
 * the hint, so that the two cannot disagree.  Whatever a message quotes
 * from a response passes through nimble_http_redact() first: an API or a
 * proxy may echo the request's credentials.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "http_internal.h"

/* text with every occurrence of needle replaced by with (text itself: none) */
static char *
replace_all(const char *text, const char *needle, const char *with)
{
	size_t		nlen = strlen(needle);
	StringInfoData buf;
	const char *p = text;
	const char *hit;

	if (nlen == 0 || strstr(text, needle) == NULL)
		return (char *) text;
	initStringInfo(&buf);
	while ((hit = strstr(p, needle)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, with);
		p = hit + nlen;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * text, with the session's credentials replaced by "[redacted]": first the
 * whole value of the header that carries them ("Bearer <key>"), then the
 * key wherever else it appears.  An API or a proxy may echo the request's
 * headers in what it answers, so every piece of a response that goes into
 * a message passes through here first.  Returns text itself when there is
 * nothing to replace; text may be NULL.
 */
char *
nimble_http_redact(NimbleHttpSession *session, const char *text)
{
	if (text == NULL || session->secret == NULL)
		return (char *) text;
	return replace_all(replace_all(text, session->secret_header, "[redacted]"),
					   session->secret, "[redacted]");
}

/* ----------------------------------------------------------------
 *		Transport failures
 * ----------------------------------------------------------------
 */

#define HINT_REACH "Check the server's url option and that the API is reachable from the database host."
#define HINT_MIDWAY "The connection to the API failed mid-transfer; try again."
#define HINT_TLS "Check the server's url, and that the system's CA certificates (or the server's ca_bundle) can verify the API's certificate."

/*
 * What nimble_fdw makes of a failed transfer: the words of the error
 * message (ours, so that a message does not change with the libcurl
 * release; curl's own text goes to the detail), its SQLSTATE, its hint,
 * and whether another try may succeed.  The first entry whose code
 * matches decides; a code not listed gets the last, catch-all entry.
 */
typedef struct TransportFailure
{
	CURLcode	code;
	const char *words;
	int			sqlstate;
	bool		retry;
	const char *hint;
} TransportFailure;

static const TransportFailure transport_failures[] = {
	{CURLE_COULDNT_RESOLVE_HOST, "could not resolve the host",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false, HINT_REACH},
	{CURLE_COULDNT_RESOLVE_PROXY, "could not resolve the proxy",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false, HINT_REACH},
	{CURLE_COULDNT_CONNECT, "could not connect",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, true, HINT_REACH},
	{CURLE_OPERATION_TIMEDOUT, "timed out", ERRCODE_CONNECTION_FAILURE, true,
	"The API did not answer within timeout_ms; raise the server's timeout_ms or try again later."},
	{CURLE_SEND_ERROR, "the connection failed while sending",
	ERRCODE_CONNECTION_FAILURE, true, HINT_MIDWAY},
	{CURLE_RECV_ERROR, "the connection failed while receiving",
	ERRCODE_CONNECTION_FAILURE, true, HINT_MIDWAY},
	{CURLE_GOT_NOTHING, "the connection closed without a response",
	ERRCODE_CONNECTION_FAILURE, true, HINT_MIDWAY},
	{CURLE_PARTIAL_FILE, "the response was cut short",
	ERRCODE_CONNECTION_FAILURE, true, HINT_MIDWAY},
	{CURLE_HTTP2, "HTTP/2 framing error", ERRCODE_CONNECTION_FAILURE, true,
	HINT_MIDWAY},
	{CURLE_HTTP2_STREAM, "HTTP/2 stream error", ERRCODE_CONNECTION_FAILURE, true,
	HINT_MIDWAY},
	{CURLE_SSL_CONNECT_ERROR, "the TLS handshake failed",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false, HINT_TLS},
	{CURLE_PEER_FAILED_VERIFICATION, "the API's TLS certificate was not accepted",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false, HINT_TLS},
	{CURLE_SSL_CERTPROBLEM, "the TLS client certificate was not accepted",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false, HINT_TLS},
	{CURLE_SSL_CACERT_BADFILE, "could not read the CA certificates",
	ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, false,
	"Install the system's CA certificates (Debian: the ca-certificates package), or set the server's ca_bundle to a PEM file."},
	{CURLE_OUT_OF_MEMORY, "out of memory", ERRCODE_OUT_OF_MEMORY, false,
	"The database server ran out of memory while receiving the response."},
	/* the catch-all: must stay last */
	{CURLE_OK, "the transfer failed", ERRCODE_CONNECTION_FAILURE, false,
	HINT_MIDWAY},
};

/*
 * Response headers beyond NIMBLE_MAX_HEADER_BYTES, or beyond libcurl's own
 * limit for one header line, which libcurl reports as running out of memory
 * (7.x) or as a value grown too large (8.6 on).
 */
static const TransportFailure headers_too_large = {
	CURLE_OK, "the response's headers were too large", ERRCODE_PROTOCOL_VIOLATION,
	false,
	"The API, or a proxy in front of it, sent more than 64 kB of response headers, or one header longer than libcurl accepts. Asking again would fail the same way: check the server's url."
};

#define NIMBLE_CURLE_TOO_LARGE 100	/* CURLE_TOO_LARGE, named in 8.6 */

static const TransportFailure *
transport_failure(NimbleHttpRequest *req)
{
	int			i;

	if (req->headers_too_big ||
		(req->in_headers && (req->result == CURLE_OUT_OF_MEMORY ||
							 (int) req->result == NIMBLE_CURLE_TOO_LARGE)))
		return &headers_too_large;
	for (i = 0; i < lengthof(transport_failures) - 1; i++)
	{
		if (transport_failures[i].code == req->result)
			break;
	}
	return &transport_failures[i];
}

/* ----------------------------------------------------------------
 *		HTTP error statuses
 * ----------------------------------------------------------------
 */

/*
 * What an error status means: its SQLSTATE, whether the official SDKs try
 * it again (408, 409, 429 and 5xx, but for 501 and 505, which fail the same
 * way every time), and the hint, which says "try again" only for statuses
 * that are.  The first entry whose range holds the status decides; the last
 * is the catch-all.  An API's description may say more of a status of its
 * own (whether to retry it, and its hint): that comes first.  404 of a
 * keyed request is no error at all (no rows), and redirects are reported
 * apart: they are never followed.  In hints, {unit} and {units} stand for
 * what the request asked for ("batch", "batches"), {key_source} for where
 * the API's users find their key, {example_url} for the API's url.
 */
typedef struct StatusPolicy
{
	long		lo;
	long		hi;
	int			sqlstate;
	bool		retry;
	const char *hint;
} StatusPolicy;

static const StatusPolicy status_policies[] = {
	{400, 400, ERRCODE_INVALID_PARAMETER_VALUE, false,
	"The API rejected the request's parameters: check the server's page_size option and the {unit} ids in the query."},
	{401, 401, ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, false,
	"Check the api_key option of the user mapping: it must be the key from {key_source}."},
	{402, 402, ERRCODE_INSUFFICIENT_RESOURCES, false,
	"The account has no budget left or its trial has ended: check its plan."},
	{403, 403, ERRCODE_INSUFFICIENT_PRIVILEGE, false,
	"The key is not allowed to read {units}: check the account's permissions."},
	{404, 404, ERRCODE_FDW_TABLE_NOT_FOUND, false,
	"Check that the server's url includes the API version, as in '{example_url}'."},
	{408, 408, ERRCODE_SYSTEM_ERROR, true,
	"The API timed out on its side; try again later."},
	{409, 409, ERRCODE_SYSTEM_ERROR, true,
	"The API reported a conflict; try again later."},
	{429, 429, ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, true,
	"The key's rate limit was exceeded: lower the server's max_concurrency or max_requests_per_second, raise max_retries, or try again later."},
	{501, 501, ERRCODE_SYSTEM_ERROR, false,
	"The API does not implement this request: check the server's url and api options."},
	{505, 505, ERRCODE_SYSTEM_ERROR, false,
	"The API refused the HTTP version: check the server's url (a proxy in between?)."},
	{500, 599, ERRCODE_SYSTEM_ERROR, true,
	"The API failed on its side; try again later."},
	/* the catch-all: must stay last */
	{0, 0, ERRCODE_FDW_ERROR, false,
	"The API does not document this status for these requests."},
};

static const StatusPolicy *
status_policy(long status)
{
	int			i;

	for (i = 0; i < lengthof(status_policies) - 1; i++)
	{
		if (status >= status_policies[i].lo && status <= status_policies[i].hi)
			break;
	}
	return &status_policies[i];
}

/* ----------------------------------------------------------------
 *		Retries
 * ----------------------------------------------------------------
 */

/*
 * May another try of req succeed: a transport failure or an HTTP status
 * that the tables above say is worth retrying (and neither a response too
 * large for max_response_bytes nor one we ran out of memory for)?
 */
bool
nimble_http_retryable(NimbleHttpRequest *req)
{
	if (req->too_big || req->out_of_memory)
		return false;
	if (req->result != CURLE_OK)
		return transport_failure(req)->retry;
	if (req->status >= 200 && req->status <= 399)
		return false;
	if (nimble_api_status(req->session->api, req->status))
		return nimble_api_status(req->session->api, req->status)->retry;
	return status_policy(req->status)->retry;
}

static const char *
attempts_note(NimbleHttpRequest *req)
{
	if (req->attempts <= 1)
		return "";
	return psprintf(" after %d attempts", req->attempts);
}

/* Raise the error of a transfer that failed; never returns. */
void
nimble_http_report_transport_error(NimbleHttpRequest *req)
{
	const TransportFailure *failure = transport_failure(req);
	const char *curl_words = req->errbuf[0] ? req->errbuf
		: curl_easy_strerror(req->result);

	/* (curl's words can quote what the peer sent: a header, a status line) */
	ereport(ERROR,
			(errcode(failure->sqlstate),
			 errmsg("%s API request GET %s failed%s: %s",
					req->session->api->title, req->path.data, attempts_note(req),
					failure->words),
			 req->headers_too_big
			 ? errdetail("The response's headers passed %d bytes.", NIMBLE_MAX_HEADER_BYTES)
			 : failure == &headers_too_large
			 ? errdetail("A response header was longer than libcurl accepts (libcurl: %s).",
						 nimble_http_redact(req->session, curl_words))
			 : errdetail("libcurl: %s", nimble_http_redact(req->session, curl_words)),
			 errhint("%s", failure->hint)));
}

/* A hint of the status table, in the words of the session's API. */
static char *
status_hint(NimbleHttpSession *session, const char *hint)
{
	char	   *text = (char *) hint;

	text = replace_all(text, "{units}", session->res->unit_plural);
	text = replace_all(text, "{unit}", session->res->unit_noun);
	text = replace_all(text, "{key_source}", session->api->key_source);
	text = replace_all(text, "{example_url}", session->api->example_url);
	return text;
}

/* Raise the error of an HTTP error status; never returns. */
void
nimble_http_report_http_error(NimbleHttpRequest *req)
{
	const NimbleApiDef *api = req->session->api;
	const StatusPolicy *policy = status_policy(req->status);
	const NimbleStatusDef *own = nimble_api_status(api, req->status);
	char	   *api_msg = NULL;
	const char *hint = own ? own->hint : status_hint(req->session, policy->hint);

	if (req->status >= 300 && req->status <= 399)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("%s API request GET %s failed: HTTP %ld redirect",
						api->title, req->path.data, req->status),
				 errdetail("The API redirected to \"%s\".",
						   nimble_http_redact(req->session, req->location)),
				 errhint("nimble_fdw never follows redirects, which could carry the key to another host: set the server's url to the final address.")));

	if (req->body && req->len > 0)
		api_msg = nimble_json_string_at(req->body, (int) req->len,
										api->error_message_paths);
	if (api_msg)
		ereport(ERROR,
				(errcode(policy->sqlstate),
				 errmsg("%s API request GET %s failed%s: HTTP %ld",
						api->title, req->path.data, attempts_note(req), req->status),
				 errdetail("The API said: %s", nimble_http_redact(req->session, api_msg)),
				 errhint("%s", hint)));
	else
		ereport(ERROR,
				(errcode(policy->sqlstate),
				 errmsg("%s API request GET %s failed%s: HTTP %ld",
						api->title, req->path.data, attempts_note(req), req->status),
				 errdetail("The response body is not a JSON error message (content type \"%s\").",
						   req->content_type[0]
						   ? nimble_http_redact(req->session, req->content_type)
						   : "none"),
				 errhint("%s", hint)));
}

