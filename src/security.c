/*-------------------------------------------------------------------------
 *
 * security.c
 *		  Where a server may send the API key: nimble_fdw.allowed_hosts.
 *
 * A server's owner chooses its url, and every query on it sends the user
 * mapping's key there.  The superuser-only setting nimble_fdw.allowed_hosts
 * limits the hosts and ports that may receive it (default: Nimble's own API
 * host, on https's port), so that neither a careless url nor a malicious one
 * can make the backend carry a key, or any request at all, elsewhere: not
 * to another host, and not to another service on an allowed host.  It is
 * checked when a scan is about to make its requests, so changing it takes
 * effect at once.
 *
 * An entry is "*", "host", "host:port" or "host:*", each optionally
 * preceded by "http://" or "https://"; "[::1]" writes an IPv6 address.  A
 * host without a port allows the url scheme's default port only.  Plain
 * http crosses the network in clear, key and all: it is allowed only to a
 * loopback host, to an entry written with "http://", or on a server that a
 * superuser owns (who may as well set tls_verify to false).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "nimble_fdw.h"

#define NIMBLE_DEFAULT_ALLOWED_HOSTS "sdk.nimbleway.com"

static char *nimble_allowed_hosts = NULL;

/* One entry of the setting, or the url being checked. */
typedef struct HostPort
{
	bool		http;			/* entry: written with http:// */
	char	   *host;			/* without brackets; "*" for any */
	int			port;			/* 0: the scheme's default; -1: any */
} HostPort;

/* "[::1]" and "::1" are the same host. */
static char *
bare_host(const char *host, size_t len)
{
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
		return pnstrdup(host + 1, len - 2);
	return pnstrdup(host, len);
}

/* Parse one entry; false (with *problem) when it is malformed. */
static bool
parse_entry(const char *entry, HostPort *hp, const char **problem)
{
	const char *p = entry;
	const char *colon;
	const char *end;

	hp->http = false;
	hp->port = 0;
	if (pg_strncasecmp(p, "http://", 7) == 0)
	{
		hp->http = true;
		p += 7;
	}
	else if (pg_strncasecmp(p, "https://", 8) == 0)
		p += 8;
	end = p + strlen(p);
	if (end > p && end[-1] == '/')
		end--;					/* "http://host/" */

	/* the port follows the last colon, unless it is inside [v6] */
	colon = NULL;
	for (const char *c = p; c < end; c++)
	{
		if (*c == ']')
			colon = NULL;
		else if (*c == ':')
			colon = c;
	}
	if (colon && p[0] != '[' && memchr(p, ':', colon - p) != NULL)
		colon = NULL;			/* a bare IPv6 address: no port */
	if (colon)
	{
		char	   *port = pnstrdup(colon + 1, end - colon - 1);
		char	   *stop;
		long		n;

		if (strcmp(port, "*") == 0)
			hp->port = -1;
		else
		{
			n = strtol(port, &stop, 10);
			if (port[0] == '\0' || *stop != '\0' || n < 1 || n > 65535)
			{
				*problem = "a port must be a number from 1 to 65535, or *";
				return false;
			}
			hp->port = (int) n;
		}
		end = colon;
	}
	if (end == p)
	{
		*problem = "an entry needs a host";
		return false;
	}
	hp->host = bare_host(p, end - p);
	if (strcmp(hp->host, "*") == 0)
	{
		if (hp->port != 0)
		{
			*problem = "\"*\" allows every port already";
			return false;
		}
		hp->port = -1;
	}
	return true;
}

/* The list must parse as comma-separated entries. */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *entries;
	ListCell   *lc;
	bool		ok = SplitIdentifierString(copy, ',', &entries);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid: give hosts (host, host:port, http://host:port, *) separated by commas.");
	else
	{
		foreach(lc, entries)
		{
			HostPort	hp;
			const char *problem;

			if (!parse_entry(lfirst(lc), &hp, &problem))
			{
				GUC_check_errdetail("Entry \"%s\": %s.", (char *) lfirst(lc), problem);
				ok = false;
				break;
			}
		}
	}
	list_free(entries);
	pfree(copy);
	return ok;
}

/*
 * Register nimble_fdw.allowed_hosts, and reserve the nimble_fdw prefix for
 * the module's settings.  Called from _PG_init.
 */
void
nimble_security_init(void)
{
	DefineCustomStringVariable("nimble_fdw.allowed_hosts",
							   "Hosts and ports that nimble_fdw servers may send requests (and API keys) to.",
							   "A comma-separated list of host, host:port, host:* or *; "
							   "http://host:port also allows plain http to it.",
							   &nimble_allowed_hosts,
							   NIMBLE_DEFAULT_ALLOWED_HOSTS,
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   check_allowed_hosts, NULL, NULL);
}

/* Loopback traffic never leaves the machine. */
static bool
is_loopback(const char *host)
{
	return pg_strcasecmp(host, "localhost") == 0 ||
		strcmp(host, "::1") == 0 ||
		strncmp(host, "127.", 4) == 0;
}

/* host:port as an entry of the setting would write it */
static char *
entry_text(const char *host, int port, bool http, int default_port)
{
	const char *scheme = http ? "http://" : "";
	bool		v6 = strchr(host, ':') != NULL;

	if (port == default_port)
		return psprintf(v6 ? "%s[%s]" : "%s%s", scheme, host);
	return psprintf(v6 ? "%s[%s]:%d" : "%s%s:%d", scheme, host, port);
}

static void
report_refused(const char *why, const char *servername, const char *host,
			   int port, const char *allow)
{
	const char *now = nimble_allowed_hosts ? nimble_allowed_hosts : "";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("server \"%s\" may not send requests to host \"%s\" port %d: %s",
					servername, host, port, why),
			 errdetail("nimble_fdw.allowed_hosts is \"%s\".", now),
			 errhint("A superuser can allow it: ALTER SYSTEM SET nimble_fdw.allowed_hosts = '%s%s%s'; SELECT pg_reload_conf();",
					 now, now[0] ? ", " : "", allow)));
}

/*
 * Refuse to go on unless the server's url may receive its users' keys:
 * its host and port are in nimble_fdw.allowed_hosts, and, for plain http,
 * a superuser allowed that too (see the file header).  Called before a
 * scan, or nimble_wait_batch, makes any request.
 */
void
nimble_check_allowed_host(const char *url, ForeignServer *server)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *curl_host = NULL;
	char	   *curl_port = NULL;
	char	   *host = NULL;
	bool		http;
	int			port = 0;
	int			default_port;
	bool		host_ok = false;
	bool		http_ok;
	char	   *copy;
	List	   *entries;
	ListCell   *lc;

	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &curl_host, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_PORT, &curl_port, CURLU_DEFAULT_PORT) == CURLUE_OK)
	{
		host = bare_host(curl_host, strlen(curl_host));
		port = atoi(curl_port);
	}
	http = scheme && pg_strcasecmp(scheme, "http") == 0;
	curl_free(scheme);
	curl_free(curl_host);
	curl_free(curl_port);
	curl_url_cleanup(u);
	if (host == NULL || port <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("server \"%s\" has no usable url", server->servername)));
	default_port = http ? 80 : 443;

	/* a superuser's own server may use plain http, like tls_verify false */
	http_ok = !http || is_loopback(host) || superuser_arg(server->owner);

	copy = pstrdup(nimble_allowed_hosts ? nimble_allowed_hosts : "");
	if (SplitIdentifierString(copy, ',', &entries))
	{
		foreach(lc, entries)
		{
			HostPort	hp;
			const char *problem;

			if (!parse_entry(lfirst(lc), &hp, &problem))
				continue;		/* the check hook let none in */
			if (strcmp(hp.host, "*") != 0 && pg_strcasecmp(hp.host, host) != 0)
				continue;
			if (hp.port >= 0 && (hp.port == 0 ? default_port : hp.port) != port)
				continue;
			host_ok = true;
			if (hp.http)
				http_ok = true;
		}
	}
	if (!host_ok)
		report_refused("it is not in nimble_fdw.allowed_hosts", server->servername,
					   host, port, entry_text(host, port, false, default_port));
	if (!http_ok)
		report_refused("plain http would send the API key in clear",
					   server->servername, host, port,
					   entry_text(host, port, true, default_port));
}
