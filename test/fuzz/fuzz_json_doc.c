/*-------------------------------------------------------------------------
 *
 * fuzz_json_doc.c
 *		  libFuzzer target for src/json_doc.c.
 *
 * Each input is one HTTP response body.  It is copied into a NUL-terminated
 * buffer of exactly len + 1 bytes (the contract of nimble_doc_parse) and run
 * through the specs the scan builds for the three Nimble endpoints (list,
 * details, progress), through one extra spec that reaches the corners of the
 * path trie the real ones do not (nested rows path, a page value that
 * contains the rows, paths that are prefixes of one another), and through
 * nimble_json_string_at with the error-message paths.  Every captured value
 * is read byte by byte, so that a pointer or length that leaves the body is
 * caught by AddressSanitizer, and checked against invariants the scan relies
 * on (raw text inside the body, strings de-escaped to valid UTF-8, ...);
 * a broken invariant aborts, which libFuzzer reports as a crash.  The
 * scanner's verdict on the syntax is also checked against PostgreSQL's own
 * parser (pg_parse_json), which must agree on every input.
 *
 * Memory: in a FRONTEND build palloc is plain malloc and nothing is freed by
 * a memory context, so the link wraps the palloc family (-Wl,--wrap, see the
 * Makefile) with the functions below.  While an input runs, every block is a
 * separate malloc() recorded in a pointer set; pfree/repalloc keep the set up
 * to date, and after the input whatever is left is freed, like the backend
 * deleting the response's memory context.  Each block stays its own malloc
 * so that AddressSanitizer's redzones, use-after-free and double-free checks
 * still apply.  The specs are built in LLVMFuzzerInitialize with tracking
 * off, so they live for the whole run.  A block that escapes the wrappers
 * would show up as a leak in libFuzzer's per-input leak check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdint.h>

#include "mb/pg_wchar.h"

#include "json_doc.h"

/* ----------------------------------------------------------------
 *		Per-input allocation tracking (the --wrap'ed palloc family)
 * ----------------------------------------------------------------
 */

#define TOMBSTONE ((void *) 1)

static bool tracking = false;
static void **live = NULL;		/* open-addressing set of live blocks */
static size_t live_cap = 0;		/* power of two */
static size_t live_used = 0;	/* slots not NULL (live + tombstones) */
static size_t live_count = 0;	/* live blocks */

static size_t
ptr_hash(const void *p)
{
	uint64_t	h = (uint64_t) (uintptr_t) p;

	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return (size_t) h;
}

static void live_insert(void *p);

static void
live_rehash(size_t newcap)
{
	void	  **old = live;
	size_t		oldcap = live_cap;

	live = calloc(newcap, sizeof(void *));
	if (live == NULL)
		abort();
	live_cap = newcap;
	live_used = 0;
	live_count = 0;
	for (size_t i = 0; i < oldcap; i++)
	{
		if (old[i] != NULL && old[i] != TOMBSTONE)
			live_insert(old[i]);
	}
	free(old);
}

static void
live_insert(void *p)
{
	size_t		i;

	if ((live_used + 1) * 2 > live_cap)
		live_rehash(live_cap == 0 ? 1024 :
					(live_count + 1) * 4 > live_cap ? live_cap * 2 : live_cap);
	i = ptr_hash(p) & (live_cap - 1);
	while (live[i] != NULL && live[i] != TOMBSTONE)
		i = (i + 1) & (live_cap - 1);
	if (live[i] == NULL)
		live_used++;
	live[i] = p;
	live_count++;
}

/* Forget p if it is a tracked block; returns whether it was. */
static bool
live_remove(void *p)
{
	size_t		i;

	if (live_cap == 0)
		return false;
	i = ptr_hash(p) & (live_cap - 1);
	while (live[i] != NULL)
	{
		if (live[i] == p)
		{
			live[i] = TOMBSTONE;
			live_count--;
			return true;
		}
		i = (i + 1) & (live_cap - 1);
	}
	return false;
}

/* Free every block the input left behind: its "memory context" goes away. */
static void
live_release_all(void)
{
	for (size_t i = 0; i < live_cap; i++)
	{
		if (live[i] != NULL && live[i] != TOMBSTONE)
			free(live[i]);
		live[i] = NULL;
	}
	live_used = 0;
	live_count = 0;
}

/*
 * The backend's palloc refuses more than MaxAllocSize.  With inputs of a few
 * kilobytes a request that big can only be size arithmetic gone wrong (a
 * negative int turned into a size_t, say), so it is reported as a bug here
 * rather than left to exhaust memory.
 */
static void
check_size(Size size, int flags)
{
	if (size > MaxAllocSize && !(flags & MCXT_ALLOC_HUGE))
	{
		fprintf(stderr, "fuzz_json_doc: invalid memory alloc request size %zu\n",
				(size_t) size);
		abort();
	}
}

static void *
track(void *p)
{
	if (p == NULL)
	{
		/* frontend palloc exits on OOM; here that is worth a report */
		fprintf(stderr, "fuzz_json_doc: out of memory\n");
		abort();
	}
	if (tracking)
		live_insert(p);
	return p;
}

void	   *__wrap_palloc(Size size);
void	   *__wrap_palloc0(Size size);
void	   *__wrap_palloc_extended(Size size, int flags);
void	   *__wrap_repalloc(void *pointer, Size size);
void		__wrap_pfree(void *pointer);
char	   *__wrap_pstrdup(const char *in);
char	   *__wrap_pnstrdup(const char *in, Size size);
void	   *__wrap_palloc_mul(Size s1, Size s2);
void	   *__wrap_palloc0_mul(Size s1, Size s2);
void	   *__wrap_palloc_mul_extended(Size s1, Size s2, int flags);
void	   *__wrap_repalloc_mul(void *p, Size s1, Size s2);

static Size
mul_or_die(Size s1, Size s2)
{
	Size		r;

	if (__builtin_mul_overflow(s1, s2, &r))
	{
		fprintf(stderr, "fuzz_json_doc: allocation size overflow\n");
		abort();
	}
	return r;
}

void *
__wrap_palloc_extended(Size size, int flags)
{
	void	   *p;

	check_size(size, flags);
	/* as fe_memutils: avoid the unportable malloc(0) */
	if (size == 0)
		size = 1;
	p = (flags & MCXT_ALLOC_ZERO) ? calloc(1, size) : malloc(size);
	if (p == NULL && (flags & MCXT_ALLOC_NO_OOM))
		return NULL;
	return track(p);
}

void *
__wrap_palloc(Size size)
{
	return __wrap_palloc_extended(size, 0);
}

void *
__wrap_palloc0(Size size)
{
	return __wrap_palloc_extended(size, MCXT_ALLOC_ZERO);
}

void *
__wrap_repalloc(void *pointer, Size size)
{
	bool		was_tracked;
	void	   *p;

	check_size(size, 0);
	if (size == 0)
		size = 1;
	was_tracked = live_remove(pointer);
	p = realloc(pointer, size);
	if (p == NULL)
	{
		fprintf(stderr, "fuzz_json_doc: out of memory\n");
		abort();
	}
	/* a block made before the input (the specs) stays untracked */
	if (was_tracked)
		live_insert(p);
	return p;
}

void
__wrap_pfree(void *pointer)
{
	(void) live_remove(pointer);
	free(pointer);
}

char *
__wrap_pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *p = __wrap_palloc(len + 1);

	memcpy(p, in, len + 1);
	return p;
}

char *
__wrap_pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *p = __wrap_palloc(len + 1);

	memcpy(p, in, len);
	p[len] = '\0';
	return p;
}

void *
__wrap_palloc_mul(Size s1, Size s2)
{
	return __wrap_palloc(mul_or_die(s1, s2));
}

void *
__wrap_palloc0_mul(Size s1, Size s2)
{
	return __wrap_palloc0(mul_or_die(s1, s2));
}

void *
__wrap_palloc_mul_extended(Size s1, Size s2, int flags)
{
	return __wrap_palloc_extended(mul_or_die(s1, s2), flags);
}

void *
__wrap_repalloc_mul(void *p, Size s1, Size s2)
{
	return __wrap_repalloc(p, mul_or_die(s1, s2));
}

/* ----------------------------------------------------------------
 *		The specs, as src/scan.c and src/routes.c build them
 * ----------------------------------------------------------------
 */

typedef struct FuzzSpec
{
	const char *name;
	NimbleDocSpec *spec;
	int			nrow_slots;
	int			npage_slots;
} FuzzSpec;

static FuzzSpec specs[6];
static NimbleDocSpec *syntax_spec;

/* src/routes.c nimble_error_paths, plus a nested one */
static const char *const error_paths[] = {
	"msg", "error", "message", "error.message", NULL
};

static void
make_spec(FuzzSpec *fs, const char *name, const char *rows, bool required,
		  bool single, const char *const *row_paths,
		  const char *const *page_paths)
{
	fs->name = name;
	fs->spec = nimble_doc_spec_create(rows, required, single);
	fs->nrow_slots = 0;
	fs->npage_slots = 0;
	for (int i = 0; row_paths[i] != NULL; i++)
	{
		int			slot = nimble_doc_spec_add_row_path(fs->spec, row_paths[i]);

		/* one slot per distinct path, numbered from 0 */
		if (slot < 0 || slot > fs->nrow_slots)
			abort();
		if (slot == fs->nrow_slots)
			fs->nrow_slots++;
	}
	for (int i = 0; page_paths && page_paths[i] != NULL; i++)
	{
		int			slot = nimble_doc_spec_add_page_path(fs->spec, page_paths[i]);

		if (slot < 0 || slot > fs->npage_slots)
			abort();
		if (slot == fs->npage_slots)
			fs->npage_slots++;
	}
	if (nimble_doc_spec_row_slots(fs->spec) != fs->nrow_slots)
		abort();
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* list endpoint: item_key, the batches columns, the pagination */
	static const char *const list_rows[] = {
		"id", "account_name", "username", "completed", "created_at", "tasks",
		"id", NULL
	};
	static const char *const list_page[] = {
		"pagination.next_cursor", "pagination.has_next", "pagination.total",
		NULL
	};

	/* details endpoint: the batch_tasks columns */
	static const char *const details_rows[] = {
		"id", "state", "output_url", "status_url", "download_url", "error",
		"error_type", "created_at", "modified_at", "account_name", "input",
		"_query", "batch_id", "status_code", "api_type", "input.url", NULL
	};

	/* progress endpoint: the body is the one row */
	static const char *const progress_rows[] = {
		"id", "completed", "completed_count", "progress", "completed_at", NULL
	};

	/* one task ({"task": {...}}), the row itself captured too */
	static const char *const task_rows[] = {
		"id", "state", "input", "", "batch_id", NULL
	};

	/* task results: the body is the row, captured whole */
	static const char *const results_rows[] = {"", NULL};

	/* not an endpoint: the trie's corners */
	static const char *const stress_rows[] = {
		"a", "a.b", "a.b.c", "x.y", "id", "input", "input.url",
		"input.url.host", "tasks", "k1", "k2", "k3", "k4", "k5", "k6", "k7",
		"k8", "k9", "..k10..", NULL
	};
	static const char *const stress_page[] = {
		"result", "result.count", "meta.next", "data", NULL
	};

	tracking = false;
	make_spec(&specs[0], "list", "data", true, false, list_rows, list_page);
	make_spec(&specs[1], "details", "tasks", true, false, details_rows, NULL);
	make_spec(&specs[2], "progress", "", false, false, progress_rows, NULL);
	make_spec(&specs[3], "task", "task", true, true, task_rows, NULL);
	make_spec(&specs[4], "results", "", false, false, results_rows, NULL);
	make_spec(&specs[5], "stress", "result.items", false, false, stress_rows,
			  stress_page);
	/* captures nothing: only the syntax can fail it */
	syntax_spec = nimble_doc_spec_create("no.such.rows", false, false);
	return 0;
}

/* ----------------------------------------------------------------
 *		Walking what a parse captured
 * ----------------------------------------------------------------
 */

static volatile unsigned int sink;

static void
fail(const char *spec, const char *what, const NimbleJsonValue *v)
{
	fprintf(stderr, "fuzz_json_doc: spec %s: %s (type %d, rawlen %d, nelems %d)\n",
			spec, what, v ? (int) v->type : -1, v ? v->rawlen : -1,
			v ? v->nelems : -1);
	abort();
}

static bool
is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Read every byte a value points at.  strict: the parse ran to the end (the
 * status is OK or BAD_SHAPE), so every capture is complete and must be a
 * well-formed piece of the body.
 */
static void walk_value(const char *spec, const NimbleJsonValue *v,
					   const char *body, int len, bool strict);

/*
 * An array's elements as nimble_json_array_elements splits them (what an
 * array column reads): as many as the parse counted, each a well-formed
 * piece of the array, in order; or a refusal that says why.
 */
static void
walk_elements(const char *spec, const NimbleJsonValue *v, const char *body,
			  int len, int expected)
{
	NimbleJsonValue *elems = NULL;
	char	   *detail = NULL;
	int			n = nimble_json_array_elements(v->raw, v->rawlen, PG_UTF8,
											   &elems, &detail);
	const char *prev_end = v->raw + 1;

	if (n < 0)
	{
		if (detail == NULL)
			fail(spec, "array elements refused without a detail", v);
		return;
	}
	if (expected >= 0 && n != expected)
		fail(spec, "array elements differ from the element count", v);
	for (int i = 0; i < n; i++)
	{
		NimbleJsonValue *e = &elems[i];

		if (e->raw < prev_end || e->raw + e->rawlen > v->raw + v->rawlen - 1)
			fail(spec, "array element outside its array, or out of order", e);
		prev_end = e->raw + e->rawlen;
		if (e->type == JSON_TOKEN_ARRAY_START)
		{
			/* (the splitter counts no nested elements: split it too) */
			if (e->text != NULL || e->raw[0] != '[' || e->raw[e->rawlen - 1] != ']')
				fail(spec, "array element is not [...]", e);
			walk_elements(spec, e, body, len, -1);
		}
		else
			walk_value(spec, e, body, len, true);
	}
}

static void
walk_value(const char *spec, const NimbleJsonValue *v, const char *body,
		   int len, bool strict)
{
	unsigned int sum = 0;

	if (v->type == JSON_TOKEN_INVALID)
		return;
	if (v->raw != NULL)
	{
		if (v->raw < body || v->rawlen < 0 || v->rawlen > len ||
			v->raw + v->rawlen > body + len)
			fail(spec, "raw text outside the body", v);
		for (int i = 0; i < v->rawlen; i++)
			sum += (unsigned char) v->raw[i];
	}
	if (v->text != NULL)
	{
		if (v->textlen < 0)
			fail(spec, "negative text length", v);
		for (int i = 0; i < v->textlen; i++)
			sum += (unsigned char) v->text[i];
		if (strict && pg_encoding_verifymbstr(PG_UTF8, v->text, v->textlen) != v->textlen)
			fail(spec, "captured string is not valid UTF-8", v);
	}
	sink += sum;

	if (!strict)
		return;
	if (v->raw == NULL || v->rawlen <= 0)
		fail(spec, "captured value without raw text", v);

	switch (v->type)
	{
		case JSON_TOKEN_STRING:
			if (v->text == NULL || v->rawlen < 2 || v->raw[0] != '"' ||
				v->raw[v->rawlen - 1] != '"')
				fail(spec, "string capture is not a JSON string", v);
			/* de-escaping never lengthens a string */
			if (v->textlen > v->rawlen - 2)
				fail(spec, "de-escaped string longer than its JSON text", v);
			/* without a backslash the text is the body between the quotes */
			if (memchr(v->raw, '\\', v->rawlen) == NULL &&
				(v->text != v->raw + 1 || v->textlen != v->rawlen - 2))
				fail(spec, "an unescaped string is not read in place", v);
			if (memchr(v->text, '\0', v->textlen) != NULL)
				fail(spec, "a string holds a NUL byte", v);
			break;
		case JSON_TOKEN_NUMBER:
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
		case JSON_TOKEN_NULL:
			if (v->text != v->raw || v->textlen != v->rawlen)
				fail(spec, "scalar lexeme differs from its raw text", v);
			break;
		case JSON_TOKEN_OBJECT_START:
			if (v->text != NULL || v->raw[0] != '{' || v->raw[v->rawlen - 1] != '}')
				fail(spec, "object capture is not {...}", v);
			break;
		case JSON_TOKEN_ARRAY_START:
			{
				bool		empty = true;

				if (v->text != NULL || v->raw[0] != '[' ||
					v->raw[v->rawlen - 1] != ']' || v->nelems < 0)
					fail(spec, "array capture is not [...]", v);
				for (int i = 1; i < v->rawlen - 1; i++)
				{
					if (!is_json_space(v->raw[i]))
						empty = false;
				}
				if (empty != (v->nelems == 0))
					fail(spec, "array element count is wrong", v);
				walk_elements(spec, v, body, len, v->nelems);
				break;
			}
		default:
			fail(spec, "unexpected token type", v);
	}
}

static void
run_spec(const FuzzSpec *fs, char *body, int len)
{
	NimbleDoc	doc;
	char	   *detail = NULL;
	NimbleDocStatus status;
	bool		strict;

	memset(&doc, 0, sizeof(doc));
	status = nimble_doc_parse(fs->spec, body, len, &doc, &detail);
	if (status != NIMBLE_DOC_OK && status != NIMBLE_DOC_BAD_JSON &&
		status != NIMBLE_DOC_BAD_SHAPE)
		fail(fs->name, "unknown status", NULL);
	/* a failure always says why; success never does */
	if ((status == NIMBLE_DOC_OK) != (detail == NULL))
		fail(fs->name, "detail does not match the status", NULL);
	if (detail != NULL)
	{
		size_t		dlen = strlen(detail);

		for (size_t i = 0; i < dlen; i++)
			sink += (unsigned char) detail[i];
	}

	if (doc.row_slots != fs->nrow_slots || doc.nrows < 0 || doc.page == NULL ||
		(doc.nrows > 0 && doc.rows == NULL))
		fail(fs->name, "bad document header", NULL);
	if (fs->spec && status == NIMBLE_DOC_OK && strcmp(fs->name, "progress") == 0 &&
		doc.nrows != 1)
		fail(fs->name, "a row-at-root body parsed to other than one row", NULL);

	strict = (status != NIMBLE_DOC_BAD_JSON);
	for (int r = 0; r < doc.nrows; r++)
		for (int s = 0; s < doc.row_slots; s++)
			walk_value(fs->name, &doc.rows[r * doc.row_slots + s], body, len,
					   strict);
	for (int s = 0; s < fs->npage_slots; s++)
		walk_value(fs->name, &doc.page[s], body, len, strict);
}

/*
 * json_doc.c has a scanner of its own; it must accept exactly the JSON that
 * PostgreSQL's parser accepts.  A body deeper than the scanner's limit is
 * refused before its syntax is judged (and would overflow the stack of the
 * recursive parser here, which has no depth check outside a backend).
 */
static void
check_against_postgres(char *body, int len)
{
	NimbleDoc	doc;
	char	   *detail = NULL;
	NimbleDocStatus status;
	bool		ours_ok;
	bool		pg_ok;
	JsonLexContext *lex;

	memset(&doc, 0, sizeof(doc));
	status = nimble_doc_parse(syntax_spec, body, len, &doc, &detail);
	if (status == NIMBLE_DOC_BAD_SHAPE && strstr(detail, "levels deep") != NULL)
		return;
	ours_ok = (status != NIMBLE_DOC_BAD_JSON);
	if (pg_encoding_verifymbstr(PG_UTF8, body, len) != len)
	{
		if (ours_ok)
			fail("syntax", "accepted a body that is not UTF-8", NULL);
		return;
	}
	lex = makeJsonLexContextCstringLen(body, len, PG_UTF8, false);
	pg_ok = (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS);
	if (ours_ok && !pg_ok)
		fail("syntax", "accepted what PostgreSQL's parser refuses", NULL);
	if (!ours_ok && pg_ok)
		fail("syntax", "refused what PostgreSQL's parser accepts", NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *body;
	char	   *msg;

	/* nimble_doc_parse takes an int length; http.c caps bodies far lower */
	if (size > 64 * 1024 * 1024)
		return -1;

	/* exactly len + 1 bytes, so that reading past the NUL is caught */
	body = malloc(size + 1);
	if (body == NULL)
		abort();
	memcpy(body, data, size);
	body[size] = '\0';

	tracking = true;
	for (int i = 0; i < lengthof(specs); i++)
		run_spec(&specs[i], body, (int) size);
	check_against_postgres(body, (int) size);

	msg = nimble_json_string_at(body, (int) size, error_paths);
	if (msg != NULL)
	{
		size_t		mlen = strlen(msg);

		for (size_t i = 0; i < mlen; i++)
			sink += (unsigned char) msg[i];
		if (pg_encoding_verifymbstr(PG_UTF8, msg, mlen) != (int) mlen)
			fail("string_at", "message is not valid UTF-8", NULL);
	}

	/* the parse must not have written to the body */
	if (memcmp(body, data, size) != 0 || body[size] != '\0')
		fail("all", "the body was modified", NULL);

	live_release_all();
	tracking = false;
	free(body);
	return 0;
}
