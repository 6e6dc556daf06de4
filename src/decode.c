/*-------------------------------------------------------------------------
 *
 * decode.c
 *		  A captured JSON value -> a Datum of the column's type.
 *
 * The common column types take a fast path straight from the parsed token;
 * any other type (uuid, varchar(n), timestamptz, domains, ...) gets the
 * value's text through its own input function, so that a column accepts
 * exactly what PostgreSQL would accept for that type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "nimble_fdw.h"
#include "json/json_scan.h"

typedef enum ConvKind
{
	CONV_TEXT,
	CONV_BOOL,
	CONV_INT2,
	CONV_INT4,
	CONV_INT8,
	CONV_NUMERIC,
	CONV_TIMESTAMPTZ,
	CONV_JSONB,
	CONV_JSON,
	CONV_ARRAY,
	CONV_INPUT					/* the type's input function */
} ConvKind;

struct NimbleColumnConv
{
	Oid			typid;
	int32		typmod;
	ConvKind	kind;
	bool		count_elements; /* the value is an array's length */
	FmgrInfo	input;
	Oid			ioparam;
	/* arrays */
	Oid			elemtype;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
	NimbleColumnConv *elem;
};

/*
 * How values go into a column of type typid and typmod: its fast path (or
 * its input function), made once per scan in CurrentMemoryContext.  With
 * count_elements, the column takes an array's number of elements ("#path").
 */
NimbleColumnConv *
nimble_conv_create(Oid typid, int32 typmod, bool count_elements)
{
	NimbleColumnConv *conv = palloc0(sizeof(NimbleColumnConv));
	Oid			infunc;

	conv->typid = typid;
	conv->typmod = typmod;
	conv->count_elements = count_elements;
	getTypeInputInfo(typid, &infunc, &conv->ioparam);
	fmgr_info(infunc, &conv->input);

	switch (typid)
	{
		case TEXTOID:
			conv->kind = CONV_TEXT;
			break;
		case BOOLOID:
			conv->kind = CONV_BOOL;
			break;
		case INT2OID:
			conv->kind = CONV_INT2;
			break;
		case INT4OID:
			conv->kind = CONV_INT4;
			break;
		case INT8OID:
			conv->kind = CONV_INT8;
			break;
		case NUMERICOID:
			conv->kind = CONV_NUMERIC;
			break;
		case TIMESTAMPTZOID:
			conv->kind = CONV_TIMESTAMPTZ;
			break;
		case JSONBOID:
			conv->kind = CONV_JSONB;
			break;
		case JSONOID:
			conv->kind = CONV_JSON;
			break;
		default:
			conv->elemtype = get_element_type(typid);
			if (OidIsValid(conv->elemtype))
			{
				conv->kind = CONV_ARRAY;
				get_typlenbyvalalign(conv->elemtype, &conv->elmlen,
									 &conv->elmbyval, &conv->elmalign);
				conv->elem = nimble_conv_create(conv->elemtype, -1, false);
			}
			else
				conv->kind = CONV_INPUT;
			break;
	}
	return conv;
}

/*
 * An integer from a JSON number.  The API documents its counts as "number",
 * so 3.0 or 1e2 must be accepted, but 2.5 is not an integer.
 */
static int64
number_to_int64(NimbleColumnConv *conv, const NimbleJsonValue *value)
{
	Datum		num;
	Datum		truncated;
	int64		v;
	char	   *token;

	if (jscan_small_integer(value->text, value->textlen, &v))
	{
		if (conv->kind == CONV_INT8 ||
			(conv->kind == CONV_INT4 && v >= PG_INT32_MIN && v <= PG_INT32_MAX) ||
			(conv->kind == CONV_INT2 && v >= PG_INT16_MIN && v <= PG_INT16_MAX))
			return v;
		/* out of range: the input function words the error */
	}
	token = nimble_json_cstring(value);
	if (strpbrk(token, ".eE") == NULL)
	{
		switch (conv->kind)
		{
			case CONV_INT2:
				return pg_strtoint16(token);
			case CONV_INT4:
				return pg_strtoint32(token);
			default:
				return pg_strtoint64(token);
		}
	}
	num = DirectFunctionCall3(numeric_in, CStringGetDatum(token),
							  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	truncated = DirectFunctionCall2(numeric_trunc, num, Int32GetDatum(0));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num, truncated)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"",
						format_type_be(conv->typid), token),
				 errdetail("The value is not a whole number.")));
	switch (conv->kind)
	{
		case CONV_INT2:
			return DatumGetInt16(DirectFunctionCall1(numeric_int2, num));
		case CONV_INT4:
			return DatumGetInt32(DirectFunctionCall1(numeric_int4, num));
		default:
			return DatumGetInt64(DirectFunctionCall1(numeric_int8, num));
	}
}

/* The number written by n ASCII digits at s, or -1. */
static inline int
fixed_digits(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * The API's timestamps ("2026-03-01T03:00:01.000Z": RFC 3339 with 'T' or a
 * space, up to six fraction digits, 'Z' or a +HH:MM offset) straight to a
 * TimestampTz, since the text names its own offset and needs no time zone
 * lookup.  False for anything else (other forms, leap seconds, year 0 or
 * 10000, "infinity"), which timestamptz_in reads, so the fast path changes
 * no answer, only the time it takes.
 */
static bool
iso_timestamptz(const char *s, int len, TimestampTz *out)
{
	int			year,
				mon,
				mday,
				hour,
				min,
				sec;
	int64		usec = 0;
	int			offset;
	int			i = 19;

	if (len < 20 || s[4] != '-' || s[7] != '-' ||
		(s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
		return false;
	year = fixed_digits(s, 4);
	mon = fixed_digits(s + 5, 2);
	mday = fixed_digits(s + 8, 2);
	hour = fixed_digits(s + 11, 2);
	min = fixed_digits(s + 14, 2);
	sec = fixed_digits(s + 17, 2);
	if (year < 1 || mon < 1 || mon > MONTHS_PER_YEAR || mday < 1 ||
		mday > day_tab[isleap(year)][mon - 1] ||
		hour < 0 || hour >= HOURS_PER_DAY || min < 0 || min >= MINS_PER_HOUR ||
		sec < 0 || sec >= SECS_PER_MINUTE)
		return false;

	if (s[i] == '.')
	{
		int			ndigits = 0;

		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		{
			if (++ndigits > 6)
				return false;	/* rounding: leave it to timestamptz_in */
			usec = usec * 10 + (s[i] - '0');
		}
		if (ndigits == 0)
			return false;
		while (ndigits++ < 6)
			usec *= 10;
	}

	if (i == len - 1 && s[i] == 'Z')
		offset = 0;
	else if (i == len - 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':')
	{
		int			oh = fixed_digits(s + i + 1, 2);
		int			om = fixed_digits(s + i + 4, 2);

		if (oh < 0 || oh > 15 || om < 0 || om >= MINS_PER_HOUR)
			return false;
		offset = (oh * MINS_PER_HOUR + om) * SECS_PER_MINUTE;
		if (s[i] == '-')
			offset = -offset;
	}
	else
		return false;

	*out = ((int64) (date2j(year, mon, mday) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY +
			(hour * MINS_PER_HOUR + min) * SECS_PER_MINUTE + sec - offset) *
		USECS_PER_SEC + usec;
	return true;
}

static Datum
int_datum(NimbleColumnConv *conv, int64 v)
{
	switch (conv->kind)
	{
		case CONV_INT2:
			return Int16GetDatum((int16) v);
		case CONV_INT4:
			return Int32GetDatum((int32) v);
		default:
			return Int64GetDatum(v);
	}
}

/*
 * A JSON array as an SQL array: each element read by the JSON module's own
 * scanner (the body was checked whole already) and given as text to the
 * element type's input, a null as NULL.
 */
static Datum
json_array_to_datum(NimbleColumnConv *conv, const NimbleJsonValue *value)
{
	NimbleJsonValue *items;
	char	   *detail = NULL;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			dims[1];
	int			lbs[1] = {1};

	n = nimble_json_array_elements(value->raw, value->rawlen,
								   GetDatabaseEncoding(), &items, &detail);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("an element of a JSON array cannot be text"),
				 errdetail("%s", detail)));
	elems = palloc(sizeof(Datum) * Max(n, 1));
	nulls = palloc(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		nulls[i] = (items[i].type == JSON_TOKEN_NULL);
		elems[i] = nulls[i] ? (Datum) 0 :
			nimble_conv_string(conv->elem, nimble_json_value_text(&items[i]),
							   &nulls[i]);
	}
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, n > 0 ? 1 : 0,
											  dims, lbs, conv->elemtype,
											  conv->elmlen, conv->elmbyval,
											  conv->elmalign));
}

/* A value given as text (a key, an array element) -> Datum. */
Datum
nimble_conv_string(NimbleColumnConv *conv, const char *str, bool *isnull)
{
	*isnull = false;
	if (conv->kind == CONV_TEXT)
		return PointerGetDatum(cstring_to_text(str));
	return InputFunctionCall(&conv->input, (char *) str, conv->ioparam,
							 conv->typmod);
}

/*
 * A captured JSON value as the column's Datum (*isnull for an absent value
 * or a JSON null): the fast path where the column has one, else the
 * type's input function on the value's text.  Throws what the type throws.
 */
Datum
nimble_conv_value(NimbleColumnConv *conv, const NimbleJsonValue *value,
				  bool *isnull)
{
	*isnull = false;

	if (value->type == JSON_TOKEN_INVALID || value->type == JSON_TOKEN_NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}

	if (conv->count_elements)
	{
		char		buf[32];

		if (value->type != JSON_TOKEN_ARRAY_START)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("expected a JSON array to count")));
		if (conv->kind == CONV_INT2 || conv->kind == CONV_INT4 ||
			conv->kind == CONV_INT8)
			return int_datum(conv, value->nelems);
		snprintf(buf, sizeof(buf), "%d", value->nelems);
		return nimble_conv_string(conv, buf, isnull);
	}

	switch (conv->kind)
	{
		case CONV_TEXT:
			if (value->type == JSON_TOKEN_OBJECT_START ||
				value->type == JSON_TOKEN_ARRAY_START)
				return PointerGetDatum(cstring_to_text_with_len(value->raw,
																value->rawlen));
			return PointerGetDatum(cstring_to_text_with_len(value->text,
															value->textlen));
		case CONV_BOOL:
			if (value->type == JSON_TOKEN_TRUE)
				return BoolGetDatum(true);
			if (value->type == JSON_TOKEN_FALSE)
				return BoolGetDatum(false);
			break;
		case CONV_INT2:
		case CONV_INT4:
		case CONV_INT8:
			if (value->type == JSON_TOKEN_NUMBER)
				return int_datum(conv, number_to_int64(conv, value));
			break;
		case CONV_NUMERIC:
			if (value->type == JSON_TOKEN_NUMBER)
				return NumericGetDatum(nimble_numeric_from_lexeme(value->text,
																  value->textlen,
																  conv->typmod));
			break;
		case CONV_TIMESTAMPTZ:
			{
				TimestampTz ts;

				if (value->type == JSON_TOKEN_STRING && conv->typmod < 0 &&
					iso_timestamptz(value->text, value->textlen, &ts))
					return TimestampTzGetDatum(ts);
			}
			break;
		case CONV_JSONB:
			if (value->type == JSON_TOKEN_OBJECT_START ||
				value->type == JSON_TOKEN_ARRAY_START)
				return nimble_json_to_jsonb(value->raw, value->rawlen);
			return DirectFunctionCall1(jsonb_in,
									   CStringGetDatum(pnstrdup(value->raw,
																value->rawlen)));
		case CONV_JSON:
			/* the parser has validated it already */
			return PointerGetDatum(cstring_to_text_with_len(value->raw,
															value->rawlen));
		case CONV_ARRAY:
			if (value->type == JSON_TOKEN_ARRAY_START)
				return json_array_to_datum(conv, value);
			break;
		case CONV_INPUT:
			break;
	}
	return nimble_conv_string(conv, nimble_json_value_text(value), isnull);
}
