/*-------------------------------------------------------------------------
 *
 * json_scan.h
 *		  Recognising JSON tokens in a body, fast.
 *
 * The tokens of RFC 8259 (strings, numbers, literals, white space) as the
 * scanner in json_doc.c needs them: each function is given the first byte
 * of a token and returns the position just past it, or NULL when the bytes
 * there are not that token.  They accept exactly what PostgreSQL's own JSON
 * lexer accepts; the fuzz target checks the two against each other.
 *
 * Strings are most of an API body, so the string scan looks at 16 bytes at
 * a time and stops only at a quote, a backslash or a control character.
 * Nothing is copied or de-escaped here.
 *
 * Inline functions in a header, so that the loops that use them (json_doc.c,
 * json_to_jsonb.c) compile each into one function.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NIMBLE_JSON_SCAN_H
#define NIMBLE_JSON_SCAN_H

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "port/pg_bitutils.h"

/* The byte b in every byte of a 64-bit word. */
#define JSCAN_BYTES(b)	(UINT64CONST(0x0101010101010101) * (uint8) (b))

/* Nonzero if a byte of w is below n (n <= 128): the classic bit trick. */
#define JSCAN_HAS_LESS(w, n) \
	(((w) - JSCAN_BYTES(n)) & ~(w) & JSCAN_BYTES(0x80))

/* Nonzero if a byte of w is zero. */
#define JSCAN_HAS_ZERO(w)	JSCAN_HAS_LESS(w, 1)

static inline bool
jscan_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline const char *
jscan_skip_space(const char *p, const char *end)
{
	while (p < end && jscan_is_space(*p))
		p++;
	return p;
}

static inline bool
jscan_is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		(c >= 'A' && c <= 'F');
}

/*
 * The first byte in [p, end) that a string scan must stop at (a quote, a
 * backslash or a control character), or end.  SSE2, which every x86-64 has,
 * looks at 16 bytes at a time; elsewhere a 64-bit word does 8.
 */
static inline const char *
jscan_string_stop(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i backslash = _mm_set1_epi8('\\');
	const __m128i space = _mm_set1_epi8(0x1F);

	while (end - p >= 16)
	{
		__m128i		v = _mm_loadu_si128((const __m128i *) p);

		/* a byte <= 0x1F is one that min(byte, 0x1F) leaves unchanged */
		__m128i		stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
													 _mm_cmpeq_epi8(v, backslash)),
										_mm_cmpeq_epi8(_mm_min_epu8(v, space), v));
		int			mask = _mm_movemask_epi8(stop);

		if (mask != 0)
			return p + pg_rightmost_one_pos32((uint32) mask);
		p += 16;
	}
#elif !defined(WORDS_BIGENDIAN)
	while (end - p >= 8)
	{
		uint64		w;
		uint64		mask;

		memcpy(&w, p, 8);

		/*
		 * Each test can flag a byte wrongly, but only above one it flags
		 * rightly: the lowest flagged byte is the first stop.
		 */
		mask = JSCAN_HAS_ZERO(w ^ JSCAN_BYTES('"')) |
			JSCAN_HAS_ZERO(w ^ JSCAN_BYTES('\\')) |
			JSCAN_HAS_LESS(w, 0x20);
		if (mask != 0)
			return p + pg_rightmost_one_pos64(mask) / 8;
		p += 8;
	}
#endif
	while (p < end && *p != '"' && *p != '\\' && (unsigned char) *p >= 0x20)
		p++;
	return p;
}

/*
 * A string whose opening quote is at p.  *escaped is set when it holds a
 * backslash.  Only the escapes' syntax is checked: what a \u escape stands
 * for is the business of whoever de-escapes the string.
 */
static inline const char *
jscan_string(const char *p, const char *end, bool *escaped)
{
	p++;
	for (;;)
	{
		p = jscan_string_stop(p, end);
		if (p >= end)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (*p != '\\')
			return NULL;		/* a control character must be escaped */
		*escaped = true;
		if (end - p < 2)
			return NULL;
		switch (p[1])
		{
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				p += 2;
				break;
			case 'u':
				if (end - p < 6 || !jscan_is_hex(p[2]) || !jscan_is_hex(p[3]) ||
					!jscan_is_hex(p[4]) || !jscan_is_hex(p[5]))
					return NULL;
				p += 6;
				break;
			default:
				return NULL;
		}
	}
}

static inline const char *
jscan_digits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/*
 * A number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  What may follow
 * it is the grammar's business: "01" and "1x" fail there.
 */
static inline const char *
jscan_number(const char *p, const char *end)
{
	const char *q;

	if (*p == '-')
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0')
		p++;
	else
		p = jscan_digits(p, end);
	if (p < end && *p == '.')
	{
		q = jscan_digits(p + 1, end);
		if (q == p + 1)
			return NULL;
		p = q;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		q = jscan_digits(p, end);
		if (q == p)
			return NULL;
		p = q;
	}
	return p;
}

/* The literal word (true, false or null) at p. */
static inline const char *
jscan_literal(const char *p, const char *end, const char *word, int len)
{
	if (end - p < len || memcmp(p, word, len) != 0)
		return NULL;
	return p + len;
}

/*
 * The value of a number token that is a plain integer of up to 18 digits
 * (which cannot overflow int64); false for anything else (a fraction, an
 * exponent, more digits), which the caller reads the general way.
 */
static inline bool
jscan_small_integer(const char *s, int len, int64 *out)
{
	uint64		v = 0;
	int			i = 0;
	bool		neg = (len > 0 && s[0] == '-');

	if (neg)
		i = 1;
	if (i == len || len - i > 18)
		return false;
	for (; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -(int64) v : (int64) v;
	return true;
}

#endif							/* NIMBLE_JSON_SCAN_H */
