/*-------------------------------------------------------------------------
 *
 * paging.c
 *		  Walking a list endpoint page by page: cursor and offset paging.
 *
 * A list endpoint's description (api.h) says how it pages.  The pager
 * builds each page's request path (page size, cursor or offset) and, once
 * a page has been read, says where the next one starts or that the walk
 * is done, and learns the list's total where the page tells it.  It knows
 * nothing of the window of requests in flight (scan.c) nor of HTTP: a new
 * kind of paging is a case here and in NimblePaging.
 *
 * A page that would make the walk endless -- a cursor seen before, "more"
 * without a cursor, an empty page that claims more -- is a protocol
 * violation, reported by the caller in the API's words.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/hsearch.h"

#include "nimble_fdw.h"

/* longest cursor taken from an API: beyond it, it is garbage */
#define NIMBLE_MAX_CURSOR (NAMEDATALEN * 16)

/* The slot of a page-level path, or -1 where the endpoint has none. */
static int
page_slot(NimbleDocSpec *spec, const char *path)
{
	return path ? nimble_doc_spec_add_page_path(spec, path) : -1;
}

/*
 * A pager for the list endpoint ep, asking page_size items a page (0: the
 * API's choice), which reads its page-level values through spec (the
 * spec that decodes the list's pages); it lives in cxt.
 */
NimblePager *
nimble_pager_create(MemoryContext cxt, const NimbleEndpoint *ep, int page_size,
					NimbleDocSpec *spec)
{
	NimblePager *pager = MemoryContextAllocZero(cxt, sizeof(NimblePager));

	pager->cxt = cxt;
	pager->ep = ep;
	pager->page_size = page_size;
	pager->cursor_slot = page_slot(spec, ep->next_cursor);
	pager->has_next_slot = page_slot(spec, ep->has_next);
	pager->total_slot = page_slot(spec, ep->total);
	pager->total = -1;
	return pager;
}

/* Back to the first page. */
void
nimble_pager_reset(NimblePager *pager)
{
	if (pager->cursor)
		pfree(pager->cursor);
	pager->cursor = NULL;
	pager->offset = 0;
	pager->done = false;
	pager->total = -1;
	if (pager->seen_cursors)
	{
		hash_destroy(pager->seen_cursors);
		pager->seen_cursors = NULL;
	}
}

/*
 * Append s to buf, percent-encoding all but RFC 3986's unreserved bytes:
 * an id or a cursor is one path segment or query value, never more.
 */
static void
append_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
			*p == '_' || *p == '~')
			appendStringInfoChar(buf, *p);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[*p >> 4]);
			appendStringInfoChar(buf, hex[*p & 15]);
		}
	}
}

/*
 * ep's path with its {key} filled in: with key percent-encoded (encode),
 * for a request; or as it is, for EXPLAIN ("/batches/{batch_id}").
 */
char *
nimble_endpoint_path(const NimbleEndpoint *ep, const char *key, bool encode)
{
	StringInfoData buf;
	const char *hole = strstr(ep->path, "{key}");

	initStringInfo(&buf);
	if (hole == NULL)
		appendStringInfoString(&buf, ep->path);
	else
	{
		appendBinaryStringInfo(&buf, ep->path, hole - ep->path);
		if (encode)
			append_encoded(&buf, key);
		else
			appendStringInfoString(&buf, key);
		appendStringInfoString(&buf, hole + 5);
	}
	return buf.data;
}

/* The path of the next page's request, palloc'd. */
char *
nimble_pager_next_path(NimblePager *pager)
{
	const NimbleEndpoint *ep = pager->ep;
	StringInfoData path;
	char		sep = '?';

	initStringInfo(&path);
	appendStringInfoString(&path, ep->path);
	if (pager->page_size > 0 && ep->limit_param)
	{
		appendStringInfo(&path, "%c%s=%d", sep, ep->limit_param, pager->page_size);
		sep = '&';
	}
	if (pager->cursor)
	{
		appendStringInfo(&path, "%c%s=", sep, ep->cursor_param);
		append_encoded(&path, pager->cursor);
	}
	if (pager->offset > 0)
		appendStringInfo(&path, "%c%s=" INT64_FORMAT, sep, ep->offset_param,
						 pager->offset);
	return path.data;
}

/* A page-level value, or NULL where the endpoint has none. */
static NimbleJsonValue *
page_value(const NimbleDoc *page, int slot)
{
	return slot >= 0 ? &page->page[slot] : NULL;
}

/*
 * Offset paging: the next page starts after the items seen so far.  The
 * walk ends when has_next says so, or, for an API without it, when the
 * items reach the total (or a page is empty); an empty page that claims
 * more would repeat itself forever.
 */
static const char *
next_offset(NimblePager *pager, const NimbleDoc *page, NimbleJsonValue *has_next)
{
	const NimbleEndpoint *ep = pager->ep;

	pager->offset += page->nrows;
	if (has_next && has_next->type == JSON_TOKEN_FALSE)
		pager->done = true;
	else if (has_next && has_next->type == JSON_TOKEN_TRUE)
	{
		if (page->nrows == 0)
			return psprintf("\"%s\" is true on a page without items; following it would loop forever.",
							ep->has_next);
	}
	else if (has_next && has_next->type != JSON_TOKEN_INVALID)
		return psprintf("\"%s\" is not a boolean.", ep->has_next);
	else if (pager->total >= 0)
		pager->done = page->nrows == 0 || pager->offset >= pager->total;
	else
		return psprintf("The page says neither \"%s\" nor \"%s\".",
						ep->has_next ? ep->has_next : "has_next",
						ep->total ? ep->total : "total");
	return NULL;
}

/*
 * Cursor paging: has_next says whether there is more, next_cursor where it
 * starts.  A cursor seen before would make the walk endless.
 */
static const char *
next_cursor(NimblePager *pager, const NimbleDoc *page, NimbleJsonValue *has_next)
{
	const NimbleEndpoint *ep = pager->ep;
	NimbleJsonValue *cursor = page_value(page, pager->cursor_slot);
	char	   *text;
	bool		found;

	if (has_next && has_next->type == JSON_TOKEN_FALSE)
	{
		pager->done = true;
		return NULL;
	}
	if (has_next == NULL || has_next->type != JSON_TOKEN_TRUE)
		return psprintf("\"%s\" is missing or not a boolean.", ep->has_next);
	if (cursor == NULL || cursor->type != JSON_TOKEN_STRING || cursor->textlen == 0)
		return psprintf("\"%s\" is true but \"%s\" is not a cursor.",
						ep->has_next, ep->next_cursor);
	text = nimble_json_cstring(cursor);
	if (strlen(text) >= NIMBLE_MAX_CURSOR)
		return "The next cursor is implausibly long.";

	if (pager->seen_cursors == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NIMBLE_MAX_CURSOR;
		ctl.entrysize = ctl.keysize;
		ctl.hcxt = pager->cxt;
		pager->seen_cursors = hash_create("nimble_fdw cursors", 64, &ctl,
										  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	(void) hash_search(pager->seen_cursors, text, HASH_ENTER, &found);
	if (found)
		return psprintf("The API returned cursor \"%s\" a second time; following it would loop forever.",
						text);
	if (pager->cursor)
		pfree(pager->cursor);
	pager->cursor = MemoryContextStrdup(pager->cxt, text);
	return NULL;
}

/*
 * A page has been read (decoded through the spec given at creation): note
 * the list's total where this page gives it (pager->total, else -1), and
 * where the next page
 * starts, or that the walk is done (pager->done).  Returns NULL, or why the
 * page would make the walk go wrong: a protocol violation for the caller
 * to report.
 */
const char *
nimble_pager_advance(NimblePager *pager, const NimbleDoc *page)
{
	NimbleJsonValue *total = page_value(page, pager->total_slot);
	NimbleJsonValue *has_next = page_value(page, pager->has_next_slot);

	pager->total = total && total->type == JSON_TOKEN_NUMBER
		? strtod(nimble_json_cstring(total), NULL) : -1;
	switch (pager->ep->paging)
	{
		case NIMBLE_PAGING_NONE:
			pager->done = true;
			return NULL;
		case NIMBLE_PAGING_OFFSET:
			return next_offset(pager, page, has_next);
		case NIMBLE_PAGING_CURSOR:
			return next_cursor(pager, page, has_next);
	}
	return NULL;				/* keep compiler quiet */
}
