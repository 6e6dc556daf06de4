/*-------------------------------------------------------------------------
 *
 * security.c
 *		  Where a server may send the API key: nimble_fdw.allowed_hosts.
 *
 * A server's owner chooses its url, and every query on it sends the user
 * mapping's key there.  The superuser-only setting nimble_fdw.allowed_hosts
 * limits the hosts that may receive it (default: Nimble's own API host), so
 * that neither a careless url nor a malicious one can make the backend
 * carry a key, or any request at all, elsewhere.  It is checked when a scan
 * is about to make its requests, so changing it takes effect at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "utils/guc.h"
#include "utils/varlena.h"

#include "nimble_fdw.h"

#define NIMBLE_DEFAULT_ALLOWED_HOSTS "sdk.nimbleway.com"

static char *nimble_allowed_hosts = NULL;

/* The list must parse as comma-separated host names. */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *hosts;
	bool		ok = SplitIdentifierString(copy, ',', &hosts);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid: give host names separated by commas.");
	list_free(hosts);
	pfree(copy);
	return ok;
}

void
nimble_security_init(void)
{
	DefineCustomStringVariable("nimble_fdw.allowed_hosts",
							   "Hosts that nimble_fdw servers may send requests (and API keys) to.",
							   "A comma-separated list of host names or addresses; * allows any host.",
							   &nimble_allowed_hosts,
							   NIMBLE_DEFAULT_ALLOWED_HOSTS,
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   check_allowed_hosts, NULL, NULL);
	MarkGUCPrefixReserved("nimble_fdw");
}

/* "[::1]" and "::1" are the same host. */
static char *
bare_host(const char *host)
{
	size_t		len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
		return pnstrdup(host + 1, len - 2);
	return pstrdup(host);
}

/* Refuse to go on unless the url's host is in nimble_fdw.allowed_hosts. */
void
nimble_check_allowed_host(const char *url, const char *servername)
{
	CURLU	   *u = curl_url();
	char	   *curl_host = NULL;
	char	   *host = NULL;
	char	   *copy;
	List	   *allowed;
	ListCell   *lc;

	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &curl_host, 0) == CURLUE_OK)
		host = bare_host(curl_host);
	curl_free(curl_host);
	curl_url_cleanup(u);
	if (host == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("server \"%s\" has no usable url", servername)));

	copy = pstrdup(nimble_allowed_hosts ? nimble_allowed_hosts : "");
	if (SplitIdentifierString(copy, ',', &allowed))
	{
		foreach(lc, allowed)
		{
			char	   *entry = bare_host(lfirst(lc));

			if (strcmp(entry, "*") == 0 || pg_strcasecmp(entry, host) == 0)
				return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("host \"%s\" of server \"%s\" is not in nimble_fdw.allowed_hosts",
					host, servername),
			 errdetail("nimble_fdw.allowed_hosts is \"%s\".",
					   nimble_allowed_hosts ? nimble_allowed_hosts : ""),
			 errhint("A superuser can allow it: ALTER SYSTEM SET nimble_fdw.allowed_hosts = '%s, %s'; SELECT pg_reload_conf();",
					 nimble_allowed_hosts ? nimble_allowed_hosts : "", host)));
}
