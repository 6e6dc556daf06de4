/*-------------------------------------------------------------------------
 *
 * json_doc.c
 *		  One API response body -> rows of captured JSON values.
 *
 * The body is read once by a scanner of our own: a loop over the JSON
 * grammar with an explicit stack, on the token recognisers of json_scan.h.
 * A spec says where the rows are and which paths, in a row and in the page
 * around the rows, the scan wants; only those values are kept, as the raw
 * JSON text inside the body (no copy) and, for scalars, the text the scan
 * converts.  Everything else is checked and skipped as it streams by.
 *
 * Why not PostgreSQL's own parser (common/jsonapi.h): it calls back for
 * every token, copies every number, and needs a separate pass to bound the
 * nesting of its recursive descent; on a typical page that was most of the
 * time a scan spends.  The scanner accepts exactly the same language (the
 * fuzz target checks it against pg_parse_json), and when a body is not JSON
 * the detail comes from PostgreSQL's parser, so the words are its own.
 *
 * Only the strings that are captured and hold a backslash are de-escaped
 * (copied); other strings are read in place, between their quotes.
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

#include "compat.h"
#include "json_doc.h"
#include "json_scan.h"

/* Deeper bodies are refused before parsing; no API response nests so deep. */
#define NIMBLE_MAX_JSON_DEPTH 512

/* A node of the trie of wanted paths. */
typedef struct PathNode
{
	char	   *name;
	int			namelen;
	int			slot;			/* capture slot, or -1 */
	bool		in_row;			/* slot is a row slot (else a page slot) */
	bool		is_rows;		/* the rows are here */
	struct PathNode **children;
	int			nchildren;

	/*
	 * The children by name_hash(): index + 1, 0 = empty; open addressing,
	 * at most half full.  A row's every field is looked up here.
	 */
	int		   *lookup;
	int			lookup_mask;
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
	bool		is_object;		/* else an array */
	bool		is_rows;		/* an array whose elements are rows */
	bool		is_row;			/* the container is a row */
} Frame;

typedef struct ParseState
{
	const NimbleDocSpec *spec;
	NimbleDoc  *doc;
	Frame	   *frames;
	int			depth;
	int			maxdepth;
	int			rows_cap;
	int			cur_row;		/* index of the row being filled, or -1 */

	/* what the next value is, set by a field or element start */
	PathNode   *pend_node;
	NimbleJsonValue *pend_capture;
	bool		pend_rows;
	bool		pend_row;

	bool		rows_seen;
	bool		too_deep;		/* stopped at the depth limit */
	int			encoding;		/* of the body, for de-escaping */
	NimbleDocStatus status;
	char	   *detail;
} ParseState;

static PathNode *
make_node(const char *name)
{
	PathNode   *node = palloc0(sizeof(PathNode));

	node->name = name ? pstrdup(name) : NULL;
	node->namelen = name ? strlen(name) : 0;
	node->slot = -1;
	return node;
}

/*
 * A hash of a field name that looks at three bytes whatever its length:
 * the names of one object seldom share length, first and last byte.
 */
static inline uint32
name_hash(const char *name, int len)
{
	if (len == 0)
		return 0;
	return (uint32) len * 31 + (uint8) name[0] * 7 + (uint8) name[len - 1];
}

/*
 * memcmp() == 0 for the short field names of a body, without the call: it
 * runs for every field of every row.
 */
static inline bool
same_bytes(const char *a, const char *b, int len)
{
	for (int i = 0; i < len; i++)
	{
		if (a[i] != b[i])
			return false;
	}
	return true;
}

/* The child of node named name (len bytes, not NUL-terminated), or NULL. */
static inline PathNode *
find_child(const PathNode *node, const char *name, int len)
{
	if (node->lookup == NULL)
		return NULL;
	for (uint32 h = name_hash(name, len) & node->lookup_mask;;
		 h = (h + 1) & node->lookup_mask)
	{
		int			i = node->lookup[h];
		PathNode   *child;

		if (i == 0)
			return NULL;
		child = node->children[i - 1];
		if (child->namelen == len && same_bytes(child->name, name, len))
			return child;
	}
}

static void
add_child(PathNode *node, PathNode *child)
{
	int			size;

	if (node->children == NULL)
		node->children = palloc(sizeof(PathNode *) * 4);
	else if (node->nchildren >= 4 && (node->nchildren & (node->nchildren - 1)) == 0)
		node->children = repalloc(node->children,
								  sizeof(PathNode *) * node->nchildren * 2);
	node->children[node->nchildren++] = child;

	/* rebuild the lookup table: specs are built once, and children are few */
	for (size = 8; size < node->nchildren * 2; size *= 2)
		;
	if (node->lookup)
		pfree(node->lookup);
	node->lookup = palloc0(sizeof(int) * size);
	node->lookup_mask = size - 1;
	for (int i = 0; i < node->nchildren; i++)
	{
		PathNode   *c = node->children[i];
		uint32		h = name_hash(c->name, c->namelen) & node->lookup_mask;

		while (node->lookup[h] != 0)
			h = (h + 1) & node->lookup_mask;
		node->lookup[h] = i + 1;
	}
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

/*
 * What to capture from a body: rows at rows_path ("" for the body itself;
 * rows_single when it holds one object, not an array; rows_required when a
 * body without it is malformed), and then the row and page paths added.
 */
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

/* How many values each row of a parse with spec holds. */
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
 * checked by the scanner), de-escaped, in the parse's encoding, and its
 * length in *outlen; NULL with *detail set when it has an escape that cannot
 * be text.  The scanner checks only the escapes' syntax: surrogate pairs and
 * \u0000 are checked here, with PostgreSQL's own words.
 */
static char *
json_unescape(const char *s, int len, int encoding, int *outlen,
			  char **detail)
{
	char	   *out;
	char	   *o;
	const char *end = s + len;

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
	*outlen = o - out;
	return out;
}

/* The child of node named by a field's raw name, or NULL. */
static inline PathNode *
find_child_raw(const PathNode *node, const char *raw, int len, bool escaped,
			   int encoding)
{
	char	   *name;
	char	   *detail;
	int			namelen;
	PathNode   *child;

	if (!escaped)
		return find_child(node, raw, len);
	/* a name with escapes: rare, so compare its de-escaped text */
	name = json_unescape(raw, len, encoding, &namelen, &detail);
	child = name ? find_child(node, name, namelen) : NULL;
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

static inline void
clear_pending(ParseState *ps)
{
	ps->pend_node = NULL;
	ps->pend_capture = NULL;
	ps->pend_rows = false;
	ps->pend_row = false;
}

static inline NimbleJsonValue *
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

/* The object that starts at p is a row: open it, and capture it if asked. */
static void
begin_row_frame(ParseState *ps, Frame *f, const char *p)
{
	begin_row(ps);
	f->is_row = true;
	f->node = ps->spec->row_root;
	if (ps->spec->row_self_slot >= 0)
	{
		f->capture = row_value(ps, ps->spec->row_self_slot);
		f->capture->type = JSON_TOKEN_OBJECT_START;
		f->capture->raw = p;
	}
}

/* An object or array starts at p, at ps->depth (below the limit). */
static inline void
begin_container(ParseState *ps, JsonTokenType type, const char *p)
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
	f->is_object = (type == JSON_TOKEN_OBJECT_START);
	f->is_rows = false;
	f->is_row = false;

	if (f->capture)
	{
		f->capture->type = type;
		f->capture->raw = p;
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
			begin_row_frame(ps, f, p);
		else if (ps->pend_rows)
			shape_error(ps, psprintf("\"%s\" is not an object", ps->spec->rows_path));
		else
			shape_error(ps, "a row is an array, not an object");
	}
	else if (ps->depth == 1 && type != JSON_TOKEN_OBJECT_START)
		shape_error(ps, "the body is not a JSON object");

	clear_pending(ps);
}

/* The open container ends just before p. */
static inline void
end_container(ParseState *ps, const char *p)
{
	Frame	   *f = &ps->frames[--ps->depth];

	if (f->capture)
		f->capture->rawlen = p - f->capture->raw;
	if (f->is_row)
		ps->cur_row = -1;
}

/* A field named by raw (len bytes between its quotes) of the open object. */
static inline void
field_start(ParseState *ps, const char *raw, int len, bool escaped)
{
	Frame	   *f = &ps->frames[ps->depth - 1];
	PathNode   *child;

	clear_pending(ps);
	if (f->node == NULL || ps->status != NIMBLE_DOC_OK)
		return;
	child = find_child_raw(f->node, raw, len, escaped, ps->encoding);
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
	}
}

/* An element of the open array starts. */
static inline void
element_start(ParseState *ps)
{
	Frame	   *f = &ps->frames[ps->depth - 1];

	clear_pending(ps);
	/* elements come only inside arrays: a captured frame here is one */
	if (f->capture)
		f->capture->nelems++;
	if (f->is_rows && ps->status == NIMBLE_DOC_OK)
		ps->pend_row = true;
}

/* A scalar token from start to end; escaped: a string with a backslash. */
static inline void
scalar(ParseState *ps, JsonTokenType type, const char *start,
	   const char *end, bool escaped)
{
	if (ps->pend_capture)
	{
		NimbleJsonValue *v = ps->pend_capture;

		v->type = type;
		v->raw = start;
		v->rawlen = end - start;
		if (type != JSON_TOKEN_STRING)
		{
			v->text = start;	/* the lexeme */
			v->textlen = v->rawlen;
		}
		else if (!escaped)
		{
			v->text = start + 1;	/* between the quotes, in place */
			v->textlen = v->rawlen - 2;
		}
		else
		{
			char	   *detail = NULL;

			v->text = json_unescape(start + 1, v->rawlen - 2, ps->encoding,
									&v->textlen, &detail);
			if (v->text == NULL && ps->status == NIMBLE_DOC_OK)
			{
				ps->status = NIMBLE_DOC_BAD_JSON;
				ps->detail = detail;
			}
		}
	}

	if (unlikely(ps->pend_rows))
	{
		/* null or absent rows are no rows; anything else is malformed */
		ps->rows_seen = true;
		if (type != JSON_TOKEN_NULL)
			shape_error(ps, psprintf("\"%s\" is not %s", ps->spec->rows_path,
									 ps->spec->rows_single ? "an object" : "an array"));
	}
	else if (unlikely(ps->pend_row))
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
 * Run the grammar over body[0..len).  Returns false at the first byte that
 * cannot be JSON there; true otherwise, with ps->status saying whether the
 * JSON had the expected shape.  A body nested deeper than the limit stops
 * the scan as a shape error: no API response nests so deep.
 */
static bool
scan_body(ParseState *ps, const char *body, int len)
{
	const char *p = body;
	const char *end = body + len;
	const char *start;
	bool		escaped;
	JsonTokenType type;

value:
	p = jscan_skip_space(p, end);
	if (p >= end)
		return false;
	start = p;
	escaped = false;
	switch (*p)
	{
		case '{':
		case '[':
			if (ps->depth == NIMBLE_MAX_JSON_DEPTH)
			{
				if (ps->status != NIMBLE_DOC_BAD_JSON)
				{
					ps->status = NIMBLE_DOC_BAD_SHAPE;
					ps->detail = psprintf("The body nests objects and arrays more than %d levels deep.",
										  NIMBLE_MAX_JSON_DEPTH);
				}
				ps->too_deep = true;
				return true;
			}
			if (*p == '{')
			{
				begin_container(ps, JSON_TOKEN_OBJECT_START, p);
				p = jscan_skip_space(p + 1, end);
				if (p < end && *p == '}')
				{
					end_container(ps, ++p);
					goto after_value;
				}
				goto field;
			}
			begin_container(ps, JSON_TOKEN_ARRAY_START, p);
			p = jscan_skip_space(p + 1, end);
			if (p < end && *p == ']')
			{
				end_container(ps, ++p);
				goto after_value;
			}
			element_start(ps);
			goto value;
		case '"':
			p = jscan_string(p, end, &escaped);
			type = JSON_TOKEN_STRING;
			break;
		case 't':
			p = jscan_literal(p, end, "true", 4);
			type = JSON_TOKEN_TRUE;
			break;
		case 'f':
			p = jscan_literal(p, end, "false", 5);
			type = JSON_TOKEN_FALSE;
			break;
		case 'n':
			p = jscan_literal(p, end, "null", 4);
			type = JSON_TOKEN_NULL;
			break;
		default:
			p = jscan_number(p, end);
			type = JSON_TOKEN_NUMBER;
			break;
	}
	if (p == NULL)
		return false;
	scalar(ps, type, start, p, escaped);
	goto after_value;

field:
	/* p is at the first byte after "{" or "," and white space */
	if (p >= end || *p != '"')
		return false;
	escaped = false;
	start = p + 1;
	p = jscan_string(p, end, &escaped);
	if (p == NULL)
		return false;
	field_start(ps, start, p - 1 - start, escaped);
	p = jscan_skip_space(p, end);
	if (p >= end || *p != ':')
		return false;
	p++;
	goto value;

after_value:
	p = jscan_skip_space(p, end);
	if (ps->depth == 0)
		return p == end;
	if (p >= end)
		return false;
	if (*p == ',')
	{
		p = jscan_skip_space(p + 1, end);
		if (ps->frames[ps->depth - 1].is_object)
			goto field;
		element_start(ps);
		goto value;
	}
	if (*p == (ps->frames[ps->depth - 1].is_object ? '}' : ']'))
	{
		end_container(ps, ++p);
		goto after_value;
	}
	return false;
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
 * Why a body the scanner refused is not JSON, in PostgreSQL's words: its
 * parser reads the body again.  Only failures pay for this.  The scanner
 * stopped within the depth limit, so the recursive parser stays shallow
 * where it agrees; should it ever disagree, the detail says so plainly.
 */
static char *
syntax_detail(char *body, int len, int encoding)
{
	JsonLexContext *lex = nimble_make_json_lex(body, len, encoding, false);
	JsonParseErrorType err = pg_parse_json(lex, &nullSemAction);
	char	   *msg;

	if (err == JSON_SUCCESS)
		return pstrdup("The body is not valid JSON.");
#ifndef FRONTEND
	msg = json_errdetail(err, lex);
#else
	msg = psprintf("JSON parse error %d", (int) err);
#endif
	/* a token quoted in the detail can be huge: keep the message short */
	if (strlen(msg) > 200)
		msg = psprintf("%.*s...", clip_message(msg, 200), msg);
	return msg;
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
	bool		syntax_ok;
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

	memset(&ps, 0, sizeof(ps));
	ps.spec = spec;
	ps.doc = doc;
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

	syntax_ok = scan_body(&ps, body, len);

	if (!syntax_ok)
	{
		*detail = syntax_detail(body, len, encoding);
		restore_context(oldcxt);
		return NIMBLE_DOC_BAD_JSON;
	}
	restore_context(oldcxt);
	if (ps.too_deep)
	{
		/* what was captured before the limit is incomplete: drop it */
		doc->nrows = 0;
		memset(doc->page, 0, sizeof(NimbleJsonValue) * Max(spec->npage_slots, 1));
		*detail = ps.detail;
		return ps.status;
	}
	if (ps.status == NIMBLE_DOC_OK && spec->rows_at_root && doc->nrows == 0)
		shape_error(&ps, "the body is not a JSON object");
	if (ps.status == NIMBLE_DOC_OK && spec->rows_required && !ps.rows_seen)
		shape_error(&ps, psprintf("the body has no \"%s\"", spec->rows_path));
	*detail = ps.detail;
	return ps.status;
}

/* Past the object or array whose opening bracket is at p (already valid). */
static const char *
skip_container(const char *p, const char *end)
{
	int			depth = 0;

	while (p < end)
	{
		bool		escaped;

		switch (*p)
		{
			case '"':
				p = jscan_string(p, end, &escaped);
				continue;
			case '{':
			case '[':
				depth++;
				break;
			case '}':
			case ']':
				if (--depth == 0)
					return p + 1;
				break;
		}
		p++;
	}
	return end;
}

/*
 * The elements of the JSON array at raw (rawlen bytes, which a parse of
 * its body has already checked) as captured values, in *elems: a string's
 * text de-escaped in encoding, a number's or a literal's lexeme, an object's
 * or array's JSON text, or a null.  Returns how many there are, or -1 with
 * *detail where a string has an escape that cannot be text (\u0000, a lone
 * surrogate), in the words a body's strings get.
 */
int
nimble_json_array_elements(const char *raw, int rawlen, int encoding,
						   NimbleJsonValue **elems, char **detail)
{
	const char *p = raw;
	const char *end = raw + rawlen;
	int			n = 0;
	int			cap = 8;
	NimbleJsonValue *out = palloc(sizeof(NimbleJsonValue) * cap);

	Assert(rawlen > 0 && *p == '[');
	p = jscan_skip_space(p + 1, end);
	while (p < end && *p != ']')
	{
		NimbleJsonValue *v;
		const char *start = p;
		bool		escaped = false;

		if (n == cap)
		{
			cap *= 2;
			out = repalloc(out, sizeof(NimbleJsonValue) * cap);
		}
		v = &out[n++];
		memset(v, 0, sizeof(NimbleJsonValue));
		switch (*p)
		{
			case '"':
				p = jscan_string(p, end, &escaped);
				v->type = JSON_TOKEN_STRING;
				v->text = start + 1;
				v->textlen = p - start - 2;
				if (escaped)
				{
					v->text = json_unescape(start + 1, p - start - 2, encoding,
											&v->textlen, detail);
					if (v->text == NULL)
						return -1;
				}
				break;
			case '{':
			case '[':
				p = skip_container(p, end);
				v->type = *start == '{' ? JSON_TOKEN_OBJECT_START : JSON_TOKEN_ARRAY_START;
				break;
			case 't':
				p += 4;
				v->type = JSON_TOKEN_TRUE;
				break;
			case 'f':
				p += 5;
				v->type = JSON_TOKEN_FALSE;
				break;
			case 'n':
				p += 4;
				v->type = JSON_TOKEN_NULL;
				break;
			default:
				p = jscan_number(p, end);
				v->type = JSON_TOKEN_NUMBER;
				break;
		}
		v->raw = start;
		v->rawlen = p - start;
		/* a scalar's text is its lexeme; a container has only its raw text */
		if (v->type != JSON_TOKEN_STRING && v->type != JSON_TOKEN_OBJECT_START &&
			v->type != JSON_TOKEN_ARRAY_START)
		{
			v->text = start;
			v->textlen = p - start;
		}
		p = jscan_skip_space(p, end);
		if (p < end && *p == ',')
			p = jscan_skip_space(p + 1, end);
	}
	*elems = out;
	return n;
}

/* A scalar's text as a C string of its own; NULL for anything else. */
char *
nimble_json_cstring(const NimbleJsonValue *value)
{
	switch (value->type)
	{
		case JSON_TOKEN_STRING:
		case JSON_TOKEN_NUMBER:
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			return pnstrdup(value->text, value->textlen);
		default:
			return NULL;
	}
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
			return nimble_json_cstring(v);
	}
	return NULL;
}
