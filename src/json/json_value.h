/*-------------------------------------------------------------------------
 *
 * json_value.h
 *		  Captured JSON values as PostgreSQL values (server side).
 *
 * The JSON module (src/json/) is the scanner (json_scan.h), the document
 * reader (json_doc.c: bodies into rows of captured values; also built for
 * the fuzzer, without the server), these value helpers (json_value.c) and
 * the jsonb writer (json_to_jsonb.c).  decode.c turns values into the
 * columns' Datums with them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_JSON_VALUE_H
#define NIMBLE_JSON_VALUE_H

#include "utils/numeric.h"

#include "json_doc.h"

/* json_value.c */
extern char *nimble_json_value_text(const NimbleJsonValue *value);
extern Numeric nimble_numeric_from_lexeme(const char *s, int len, int32 typmod);

/* json_to_jsonb.c */
extern Datum nimble_json_to_jsonb(const char *raw, int rawlen);

#endif							/* NIMBLE_JSON_VALUE_H */
