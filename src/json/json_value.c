/*-------------------------------------------------------------------------
 *
 * json_value.c
 *		  Captured JSON values as text and numbers, for decode.c and the
 *		  jsonb writer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "json_scan.h"
#include "json_value.h"

/*
 * The value as text: a string's content (de-escaped), a number's or a
 * literal's lexeme, or an object's or array's JSON text; NULL for null.
 */
char *
nimble_json_value_text(const NimbleJsonValue *value)
{
	switch (value->type)
	{
		case JSON_TOKEN_OBJECT_START:
		case JSON_TOKEN_ARRAY_START:
			return pnstrdup(value->raw, value->rawlen);
		default:
			return nimble_json_cstring(value);
	}
}

/*
 * A JSON number's lexeme as numeric_in reads it under typmod; a plain
 * integer without a typmod (the common case) is made directly, the same
 * value with the same display scale.
 */
Numeric
nimble_numeric_from_lexeme(const char *s, int len, int32 typmod)
{
	int64		v;

	if (typmod < 0 && jscan_small_integer(s, len, &v))
		return int64_to_numeric(v);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(pnstrdup(s, len)),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(typmod)));
}
