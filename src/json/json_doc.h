/*-------------------------------------------------------------------------
 *
 * json_doc.h
 *		  One API response body -> rows of captured JSON values.
 *
 * Library-facing: this needs only PostgreSQL's common/ code (the JSON
 * parser, palloc), so that it builds both into the backend module and,
 * with FRONTEND defined, into the fuzz target in test/fuzz/.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_JSON_DOC_H
#define NIMBLE_JSON_DOC_H

#include "common/jsonapi.h"

/*
 * One JSON value captured from a body; type JSON_TOKEN_INVALID = absent.
 *
 * A scalar's text is not NUL-terminated: a string without escapes is read
 * in place, between its quotes, so that capturing it copies nothing.  Use
 * nimble_json_cstring() where a C string is needed.
 */
typedef struct NimbleJsonValue
{
	JsonTokenType type;			/* STRING, NUMBER, TRUE, FALSE, NULL,
								 * OBJECT_START or ARRAY_START */
	const char *text;			/* scalars: de-escaped string or lexeme */
	int			textlen;
	const char *raw;			/* the value's JSON text, inside the body */
	int			rawlen;
	int			nelems;			/* arrays: number of elements */
} NimbleJsonValue;

typedef struct NimbleDocSpec NimbleDocSpec;

/* A parsed response: rows of captured values plus page-level values. */
typedef struct NimbleDoc
{
	struct MemoryContextData *cxt;	/* owns everything here, and the body;
									 * unused in a FRONTEND build */
	int			nrows;
	int			row_slots;		/* values per row */
	NimbleJsonValue *rows;		/* nrows * row_slots values, row-major */
	NimbleJsonValue *page;		/* values found outside the rows */
} NimbleDoc;

/* Outcome of parsing, for callers that must not throw (the fuzz target). */
typedef enum NimbleDocStatus
{
	NIMBLE_DOC_OK,
	NIMBLE_DOC_BAD_JSON,		/* syntax error; detail says where */
	NIMBLE_DOC_BAD_SHAPE		/* valid JSON, not the expected structure */
} NimbleDocStatus;

extern NimbleDocSpec *nimble_doc_spec_create(const char *rows_path,
											 bool rows_required,
											 bool rows_single);
extern int	nimble_doc_spec_add_row_path(NimbleDocSpec *spec, const char *path);
extern int	nimble_doc_spec_add_page_path(NimbleDocSpec *spec, const char *path);
extern int	nimble_doc_spec_row_slots(const NimbleDocSpec *spec);
extern NimbleDocStatus nimble_doc_parse(const NimbleDocSpec *spec,
										char *body, int len,
										NimbleDoc *doc, char **detail);
extern char *nimble_json_cstring(const NimbleJsonValue *value);
extern int	nimble_json_array_elements(const char *raw, int rawlen, int encoding,
									   NimbleJsonValue **elems, char **detail);
extern char *nimble_json_string_at(char *body, int len, const char *const *paths);

#endif							/* NIMBLE_JSON_DOC_H */
