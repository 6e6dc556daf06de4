/*-------------------------------------------------------------------------
 *
 * json_doc.c
 *		  One API response body -> rows of captured JSON values.
 *
 * The body is parsed once with PostgreSQL's own JSON parser (semantic
 * actions, no tree).  A spec says where the rows are and which paths, in a
 * row and in the page around the rows, the scan wants; only those values are
 * kept, as the raw JSON text inside the body (no copy) and, for scalars, the
 * string the scan converts.  Everything else is skipped as it streams by.
 *
 * The lexer runs without de-escaping: it would otherwise copy every string
 * and field name of the body, wanted or not, and a body of long strings
 * would need about three times its size.  Field names are read from the
 * body itself, and only the wanted strings are de-escaped, here.
 *
 * The parser reports problems as a status and a detail instead of throwing,
 * so that the caller decides the message and the fuzz target can run it
 * without a backend.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#include "utils/memutils.h"
#endif

#include "common/string.h"
#include "mb/pg_wchar.h"

#include "json_doc.h"

/* Deeper bodies are refused before parsing; no API response nests so deep. */
#define NIMBLE_MAX_JSON_DEPTH 512

/* A node of the trie of wanted paths. */
typedef struct PathNode
{
	char	   *name;
	int			slot;			/* capture slot, or -1 */
	bool		in_row;			/* slot is a row slot (else a page slot) */
	bool		is_rows;		/* the rows are here */
	struct PathNode **children;
	int			nchildren;
} PathNode;

struct NimbleDocSpec
{
	PathNode   *root;			/* paths from the top of the body */
	PathNode   *row_root;		/* paths from the top of a row */
	bool		rows_at_root;	/* the body is the one row */
	bool		rows_single;	/* the rows path holds one object */
	bool		rows_required;
	int			row_self_slot;	/* slot of the row object itself, or -1 */
	char	   *rows_path;
	int			nrow_slots;
	int			npage_slots;
};

/* One open object or array while parsing. */
typedef struct Frame
{
	PathNode   *node;			/* trie node of this container, or NULL */
	NimbleJsonValue *capture;	/* value being captured, or NULL */
	bool		is_rows;		/* an array whose elements are rows */
	bool		is_row;			/* the container is a row */
} Frame;

typedef struct ParseState
{
	const NimbleDocSpec *spec;
	JsonLexContext *lex;
	NimbleDoc  *doc;
	Frame	   *frames;
	int			depth;
	int			maxdepth;
	int			rows_cap;
	int			cur_row;		/* index of the row being filled, or -1 */

	/* what the next value is, set by a field or element start */
	PathNode   *pend_node;
	NimbleJsonValue *pend_capture;
	const char *pend_start;
	bool		pend_rows;
	bool		pend_row;

	bool		rows_seen;
	int			encoding;		/* of the body, for de-escaping */
	NimbleDocStatus status;
	char	   *detail;
} ParseState;

static PathNode *
make_node(const char *name)
{
	PathNode   *node = palloc0(sizeof(PathNode));

	node->name = name ? pstrdup(name) : NULL;
	node->slot = -1;
	return node;
}

/* The child of node named name (len bytes, not NUL-terminated), or NULL. */
static PathNode *
find_child(PathNode *node, const char *name, int len)
{
	for (int i = 0; i < node->nchildren; i++)
	{
		const char *cname = node->children[i]->name;

		if (strncmp(cname, name, len) == 0 && cname[len] == '\0')
			return node->children[i];
	}
	return NULL;
}

static void
add_child(PathNode *node, PathNode *child)
{
	if (node->children == NULL)
		node->children = palloc(sizeof(PathNode *) * 4);
	else if (node->nchildren >= 4 && (node->nchildren & (node->nchildren - 1)) == 0)
		node->children = repalloc(node->children,
								  sizeof(PathNode *) * node->nchildren * 2);
	node->children[node->nchildren++] = child;
}

/* Walk (creating as needed) the nodes of a dotted path below root. */
static PathNode *
insert_path(PathNode *root, const char *path)
{
	char	   *copy = pstrdup(path);
	char	   *save = NULL;
	PathNode   *node = root;

	for (char *seg = strtok_r(copy, ".", &save); seg != NULL;
		 seg = strtok_r(NULL, ".", &save))
	{
		PathNode   *child = find_child(node, seg, strlen(seg));

		if (child == NULL)
		{
			child = make_node(seg);
			add_child(node, child);
		}
		node = child;
	}
	pfree(copy);
	return node;
}

NimbleDocSpec *
nimble_doc_spec_create(const char *rows_path, bool rows_required,
					   bool rows_single)
{
	NimbleDocSpec *spec = palloc0(sizeof(NimbleDocSpec));

	spec->root = make_node(NULL);
	spec->row_root = make_node(NULL);
	spec->rows_path = pstrdup(rows_path);
	spec->rows_required = rows_required;
	spec->rows_single = rows_single;
	spec->row_self_slot = -1;
	spec->rows_at_root = (rows_path[0] == '\0');
	if (!spec->rows_at_root)
		insert_path(spec->root, rows_path)->is_rows = true;
	return spec;
}

/*
 * Ask for a path in each row; returns its slot (one slot per path).  The
 * empty path is the row object itself.
 */
int
nimble_doc_spec_add_row_path(NimbleDocSpec *spec, const char *path)
{
	PathNode   *node;

	if (path[0] == '\0')
	{
		if (spec->row_self_slot < 0)
			spec->row_self_slot = spec->nrow_slots++;
		return spec->row_self_slot;
	}
	node = insert_path(spec->row_root, path);

	if (node->slot < 0)
	{
		node->slot = spec->nrow_slots++;
		node->in_row = true;
	}
	return node->slot;
}

/* Ask for a path outside the rows (pagination); returns its slot. */
int
nimble_doc_spec_add_page_path(NimbleDocSpec *spec, const char *path)
{
	PathNode   *node = insert_path(spec->root, path);

	Assert(!spec->rows_at_root);
	if (node->slot < 0)
		node->slot = spec->npage_slots++;
	return node->slot;
}

int
nimble_doc_spec_row_slots(const NimbleDocSpec *spec)
{
	return spec->nrow_slots;
}

/* The value of 4 hex digits (the lexer has checked that they are). */
static pg_wchar
hex4(const char *s)
{
	pg_wchar	v = 0;

	for (int i = 0; i < 4; i++)
	{
		char		c = s[i];

		v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/*
 * The text of a JSON string's body (the bytes between its quotes, already
 * checked by the lexer), de-escaped, in the parse's encoding; NULL with
 * *detail set when it has an escape that cannot be text.  The lexer checks
 * only the escapes' syntax when it does not de-escape: surrogate pairs and
 * \u0000 are checked here, with PostgreSQL's own words.
 */
static char *
json_unescape(const char *s, int len, int encoding, char **detail)
{
	char	   *out;
	char	   *o;
	const char *end = s + len;

	if (memchr(s, '\\', len) == NULL)
		return pnstrdup(s, len);

	/* an escape never gets longer: "\uXXXX" (6 bytes) -> at most 4 */
	out = o = palloc(len + 1);
	while (s < end)
	{
		pg_wchar	ch;

		if (*s != '\\')
		{
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s++)
		{
			case 'b':
				*o++ = '\b';
				continue;
			case 'f':
				*o++ = '\f';
				continue;
			case 'n':
				*o++ = '\n';
				continue;
			case 'r':
				*o++ = '\r';
				continue;
			case 't':
				*o++ = '\t';
				continue;
			case 'u':
				break;
			default:			/* \" \\ \/ */
				*o++ = s[-1];
				continue;
		}
		ch = hex4(s);
		s += 4;
		if (ch >= 0xD800 && ch <= 0xDBFF)
		{
			pg_wchar	lo = 0;

			if (end - s >= 6 && s[0] == '\\' && s[1] == 'u')
				lo = hex4(s + 2);
			if (lo >= 0xD800 && lo <= 0xDBFF)
			{
				*detail = pstrdup("Unicode high surrogate must not follow a high surrogate.");
				return NULL;
			}
			if (lo < 0xDC00 || lo > 0xDFFF)
			{
				*detail = pstrdup("Unicode low surrogate must follow a high surrogate.");
				return NULL;
			}
			ch = 0x10000 + ((ch - 0xD800) << 10) + (lo - 0xDC00);
			s += 6;
		}
		else if (ch >= 0xDC00 && ch <= 0xDFFF)
		{
			*detail = pstrdup("Unicode low surrogate must follow a high surrogate.");
			return NULL;
		}
		if (ch == 0)
		{
			/* text cannot hold it; PostgreSQL's json refuses it too */
			*detail = pstrdup("\\u0000 cannot be converted to text.");
			return NULL;
		}
		if (encoding == PG_UTF8)
			o += pg_utf_mblen(unicode_to_utf8(ch, (unsigned char *) o));
		else if (ch <= 0x7F)
			*o++ = (char) ch;
		else
		{
#ifndef FRONTEND
			unsigned char buf[MAX_UNICODE_EQUIVALENT_STRING + 1];
			int			n;

			/* throws if the database encoding has no such character */
			pg_unicode_to_server(ch, buf);
			n = strlen((char *) buf);
			/* one character of the server encoding: at most 4 bytes */
			Assert(n <= MAX_MULTIBYTE_CHAR_LEN);
			memcpy(o, buf, n);
			o += n;
#else
			*detail = pstrdup("A Unicode escape needs a UTF-8 encoding.");
			return NULL;
#endif
		}
	}
	*o = '\0';
	return out;
}

/*
 * The raw name (between its quotes) of the field whose value starts now: the
 * lexer has consumed the name and the colon, and prev_token_terminator is
 * just past the colon.  The name was lexed already, so walking back is safe:
 * its opening quote is the first one not escaped by an odd number of
 * backslashes.
 */
static void
raw_field_name(JsonLexContext *lex, const char **name, int *len)
{
	const char *input = lex->input;
	const char *p = lex->prev_token_terminator - 1;	/* the colon */
	const char *close;
	const char *open;

	Assert(*p == ':');
	do
		p--;
	while (p > input && *p != '"');
	close = p;
	open = close - 1;
	for (;;)
	{
		const char *b;
		int			backslashes = 0;

		while (open > input && *open != '"')
			open--;
		for (b = open - 1; b >= input && *b == '\\'; b--)
			backslashes++;
		if (backslashes % 2 == 0 || open == input)
			break;
		open--;
	}
	*name = open + 1;
	*len = close - open - 1;
}

/* The child of node named by a field's raw name, or NULL. */
static PathNode *
find_child_raw(PathNode *node, const char *raw, int len, int encoding)
{
	char	   *name;
	char	   *detail;
	PathNode   *child;

	if (memchr(raw, '\\', len) == NULL)
		return find_child(node, raw, len);
	/* a name with escapes: rare, so compare its de-escaped text */
	name = json_unescape(raw, len, encoding, &detail);
	child = name ? find_child(node, name, strlen(name)) : NULL;
	if (name)
		pfree(name);
	return child;
}

static void
shape_error(ParseState *ps, const char *detail)
{
	if (ps->status == NIMBLE_DOC_OK)
	{
		ps->status = NIMBLE_DOC_BAD_SHAPE;
		ps->detail = pstrdup(detail);
	}
}

static void
clear_pending(ParseState *ps)
{
	ps->pend_node = NULL;
	ps->pend_capture = NULL;
	ps->pend_start = NULL;
	ps->pend_rows = false;
	ps->pend_row = false;
}

static NimbleJsonValue *
row_value(ParseState *ps, int slot)
{
	NimbleDoc  *doc = ps->doc;

	return &doc->rows[ps->cur_row * doc->row_slots + slot];
}

static void
begin_row(ParseState *ps)
{
	NimbleDoc  *doc = ps->doc;

	if (doc->nrows == ps->rows_cap)
	{
		ps->rows_cap = ps->rows_cap == 0 ? 16 : ps->rows_cap * 2;
		if (doc->rows == NULL)
			doc->rows = palloc(sizeof(NimbleJsonValue) * ps->rows_cap * Max(doc->row_slots, 1));
		else
			doc->rows = repalloc(doc->rows,
								 sizeof(NimbleJsonValue) * ps->rows_cap * Max(doc->row_slots, 1));
	}
	ps->cur_row = doc->nrows++;
	/* type 0 is JSON_TOKEN_INVALID: absent */
	memset(&doc->rows[ps->cur_row * doc->row_slots], 0,
		   sizeof(NimbleJsonValue) * doc->row_slots);
}

/* The object that starts now is a row: open it, and capture it if asked. */
static void
begin_row_frame(ParseState *ps, Frame *f)
{
	begin_row(ps);
	f->is_row = true;
	f->node = ps->spec->row_root;
	if (ps->spec->row_self_slot >= 0)
	{
		/* the lexer's current token is the row's "{" */
		f->capture = row_value(ps, ps->spec->row_self_slot);
		f->capture->type = JSON_TOKEN_OBJECT_START;
		f->capture->str = NULL;
		f->capture->raw = ps->lex->token_start;
		f->capture->nelems = 0;
	}
}

static void
begin_container(ParseState *ps, JsonTokenType type)
{
	Frame	   *f;

	if (ps->depth == ps->maxdepth)
	{
		ps->maxdepth *= 2;
		ps->frames = repalloc(ps->frames, sizeof(Frame) * ps->maxdepth);
	}
	f = &ps->frames[ps->depth++];
	f->node = ps->pend_node;
	f->capture = ps->pend_capture;
	f->is_rows = false;
	f->is_row = false;

	if (f->capture)
	{
		f->capture->type = type;
		f->capture->str = NULL;
		f->capture->raw = ps->pend_start;
		f->capture->nelems = 0;
	}

	if (ps->pend_rows && !ps->spec->rows_single)
	{
		ps->rows_seen = true;
		if (type == JSON_TOKEN_ARRAY_START)
			f->is_rows = true;
		else
			shape_error(ps, psprintf("\"%s\" is not an array", ps->spec->rows_path));
	}
	else if (ps->pend_rows || ps->pend_row)
	{
		ps->rows_seen |= ps->pend_rows;
		if (type == JSON_TOKEN_OBJECT_START)
			begin_row_frame(ps, f);
		else if (ps->pend_rows)
			shape_error(ps, psprintf("\"%s\" is not an object", ps->spec->rows_path));
		else
			shape_error(ps, "a row is an array, not an object");
	}
	else if (ps->depth == 1 && type != JSON_TOKEN_OBJECT_START)
		shape_error(ps, "the body is not a JSON object");

	clear_pending(ps);
}

static void
end_container(ParseState *ps)
{
	Frame	   *f = &ps->frames[--ps->depth];

	if (f->capture)
		f->capture->rawlen = ps->lex->prev_token_terminator - f->capture->raw;
	if (f->is_row)
		ps->cur_row = -1;
}

static void
doc_object_start(void *state)
{
	begin_container((ParseState *) state, JSON_TOKEN_OBJECT_START);
}

static void
doc_array_start(void *state)
{
	begin_container((ParseState *) state, JSON_TOKEN_ARRAY_START);
}

static void
doc_container_end(void *state)
{
	end_container((ParseState *) state);
}

static void
doc_field_start(void *state, char *fname, bool isnull)
{
	ParseState *ps = (ParseState *) state;
	Frame	   *f = &ps->frames[ps->depth - 1];
	PathNode   *child;

	const char *raw;
	int			len;

	/* without de-escaping the lexer passes no name (fname is NULL) */
	clear_pending(ps);
	if (f->node == NULL || ps->status != NIMBLE_DOC_OK)
		return;
	raw_field_name(ps->lex, &raw, &len);
	child = find_child_raw(f->node, raw, len, ps->encoding);
	if (child == NULL)
		return;

	ps->pend_node = child;
	ps->pend_rows = child->is_rows;
	if (child->slot >= 0)
	{
		NimbleJsonValue *v;

		/* row nodes hang only below row frames: a row is open here */
		Assert(!child->in_row || ps->cur_row >= 0);
		v = child->in_row ? row_value(ps, child->slot) : &ps->doc->page[child->slot];

		/* a repeated key: the last one wins, as in jsonb */
		memset(v, 0, sizeof(NimbleJsonValue));
		ps->pend_capture = v;
		ps->pend_start = ps->lex->token_start;
	}
}

static void
doc_element_start(void *state, bool isnull)
{
	ParseState *ps = (ParseState *) state;
	Frame	   *f = &ps->frames[ps->depth - 1];

	clear_pending(ps);
	/* elements come only inside arrays: a captured frame here is one */
	if (f->capture)
		f->capture->nelems++;
	if (f->is_rows && ps->status == NIMBLE_DOC_OK)
	{
		ps->pend_row = true;
		ps->pend_start = ps->lex->token_start;
	}
}

static void
doc_scalar(void *state, char *token, JsonTokenType type)
{
	ParseState *ps = (ParseState *) state;

	if (ps->pend_capture)
	{
		NimbleJsonValue *v = ps->pend_capture;

		v->type = type;
		v->raw = ps->pend_start;
		v->rawlen = ps->lex->prev_token_terminator - ps->pend_start;
		if (type != JSON_TOKEN_STRING)
			v->str = token;		/* the lexeme */
		else
		{
			char	   *detail = NULL;

			/* the string between its quotes */
			v->str = json_unescape(v->raw + 1, v->rawlen - 2, ps->encoding, &detail);
			if (v->str == NULL && ps->status == NIMBLE_DOC_OK)
			{
				ps->status = NIMBLE_DOC_BAD_JSON;
				ps->detail = detail;
			}
		}
	}
	else if (token)
		pfree(token);

	if (ps->pend_rows)
	{
		/* null or absent rows are no rows; anything else is malformed */
		ps->rows_seen = true;
		if (type != JSON_TOKEN_NULL)
			shape_error(ps, psprintf("\"%s\" is not %s", ps->spec->rows_path,
									 ps->spec->rows_single ? "an object" : "an array"));
	}
	else if (ps->pend_row)
	{
		/* null entries of a rows array are skipped (the API sends them) */
		if (type != JSON_TOKEN_NULL)
			shape_error(ps, "a row is a scalar, not an object");
	}
	else if (ps->depth == 0)
		shape_error(ps, "the body is not a JSON object");
	clear_pending(ps);
}

/*
 * The deepest nesting of objects and arrays, counted up to limit + 1.  The
 * recursive-descent parser would otherwise meet a hostile body's nesting
 * with the stack-depth error at best.
 */
static int
json_nesting_depth(const char *s, int len, int limit)
{
	int			depth = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > limit)
				return depth;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return depth;
}

/* The backend parses into doc->cxt; a FRONTEND build has one heap. */
#ifndef FRONTEND
#define restore_context(cxt) MemoryContextSwitchTo(cxt)
#else
#define restore_context(cxt) ((void) 0)
#endif

/*
 * How many bytes of a message fit in max without cutting a character.  The
 * backend's messages are in the database encoding; the FRONTEND build
 * (fuzz target) has only UTF-8.
 */
static int
clip_message(const char *s, int max)
{
#ifndef FRONTEND
	return pg_mbcliplen(s, strlen(s), max);
#else
	int			len = max;

	while (len > 0 && (((unsigned char) s[len]) & 0xC0) == 0x80)
		len--;
	return len;
#endif
}

/*
 * Parse body (len bytes, NUL-terminated, UTF-8) into doc, whose cxt the
 * caller made; everything is allocated there.  On failure, *detail says why.
 */
NimbleDocStatus
nimble_doc_parse(const NimbleDocSpec *spec, char *body, int len,
				 NimbleDoc *doc, char **detail)
{
#ifndef FRONTEND
	MemoryContext oldcxt = MemoryContextSwitchTo(doc->cxt);
#endif
	ParseState	ps;
	JsonSemAction sem;
	JsonParseErrorType err;
	int			encoding = PG_UTF8;

	*detail = NULL;
	doc->nrows = 0;
	doc->rows = NULL;
	doc->row_slots = spec->nrow_slots;
	doc->page = palloc0(sizeof(NimbleJsonValue) * Max(spec->npage_slots, 1));

	if (pg_encoding_verifymbstr(PG_UTF8, body, len) != len)
	{
		*detail = pstrdup("The body is not valid UTF-8.");
		restore_context(oldcxt);
		return NIMBLE_DOC_BAD_JSON;
	}
#ifndef FRONTEND
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		body = pg_any_to_server(body, len, PG_UTF8);
		len = strlen(body);
		encoding = GetDatabaseEncoding();
	}
#endif
	if (json_nesting_depth(body, len, NIMBLE_MAX_JSON_DEPTH) > NIMBLE_MAX_JSON_DEPTH)
	{
		*detail = psprintf("The body nests objects and arrays more than %d levels deep.",
						   NIMBLE_MAX_JSON_DEPTH);
		restore_context(oldcxt);
		return NIMBLE_DOC_BAD_SHAPE;
	}

	memset(&ps, 0, sizeof(ps));
	ps.spec = spec;
	ps.doc = doc;
	ps.lex = makeJsonLexContextCstringLen(body, len, encoding, false);
	ps.encoding = encoding;
	ps.maxdepth = 16;
	ps.frames = palloc(sizeof(Frame) * ps.maxdepth);
	ps.cur_row = -1;
	ps.status = NIMBLE_DOC_OK;

	/* what the top-level value is */
	if (spec->rows_at_root)
	{
		ps.pend_row = true;
		ps.pend_node = spec->row_root;
	}
	else
		ps.pend_node = spec->root;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &ps;
	sem.object_start = doc_object_start;
	sem.object_end = doc_container_end;
	sem.array_start = doc_array_start;
	sem.array_end = doc_container_end;
	sem.object_field_start = doc_field_start;
	sem.array_element_start = doc_element_start;
	sem.scalar = doc_scalar;

	err = pg_parse_json(ps.lex, &sem);
	restore_context(oldcxt);

	if (err != JSON_SUCCESS)
	{
#ifndef FRONTEND
		char	   *msg = json_errdetail(err, ps.lex);
#else
		char	   *msg = psprintf("JSON parse error %d", (int) err);
#endif

		/* a token quoted in the detail can be huge: keep the message short */
		if (strlen(msg) > 200)
			msg = psprintf("%.*s...", clip_message(msg, 200), msg);
		*detail = msg;
		return NIMBLE_DOC_BAD_JSON;
	}
	if (ps.status == NIMBLE_DOC_OK && spec->rows_at_root && doc->nrows == 0)
		shape_error(&ps, "the body is not a JSON object");
	if (ps.status == NIMBLE_DOC_OK && spec->rows_required && !ps.rows_seen)
		shape_error(&ps, psprintf("the body has no \"%s\"", spec->rows_path));
	*detail = ps.detail;
	return ps.status;
}

/*
 * The first of paths (dotted paths, at most 8) that holds a string in
 * body, or NULL: used to show an API's own error message.  Never throws on
 * a bad body.
 */
char *
nimble_json_string_at(char *body, int len, const char *const *paths)
{
	NimbleDocSpec *spec = nimble_doc_spec_create("", false, false);
	NimbleDoc	doc;
	char	   *detail;
	int			slots[8];
	int			n;

	/* as rows at the root, so that every path is a row slot */
	for (n = 0; n < lengthof(slots) && paths[n] != NULL; n++)
		slots[n] = nimble_doc_spec_add_row_path(spec, paths[n]);
	Assert(n < lengthof(slots) || paths[n] == NULL);

#ifndef FRONTEND

	/*
	 * Converting a non-ASCII body to another database encoding can throw;
	 * here that error would hide the API's own error, so don't try.
	 */
	if (GetDatabaseEncoding() != PG_UTF8 && !pg_is_ascii(body))
		return NULL;
#endif

#ifndef FRONTEND
	doc.cxt = CurrentMemoryContext;
#endif
	if (nimble_doc_parse(spec, body, len, &doc, &detail) != NIMBLE_DOC_OK ||
		doc.nrows != 1)
		return NULL;
	for (int i = 0; i < n; i++)
	{
		NimbleJsonValue *v = &doc.rows[slots[i]];

		if (v->type == JSON_TOKEN_STRING)
			return v->str;
	}
	return NULL;
}
