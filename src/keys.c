/*-------------------------------------------------------------------------
 *
 * keys.c
 *		  The keys of a scan: ids sent to the API, and ids matched typed.
 *
 * A key condition is sent to the API only where asking for the value's
 * text is the same test as the column type's equality: text and varchar
 * (and domains over them) under a deterministic collation, whose equality
 * is byte equality (NIMBLE_KEYS_EXACT).  For any other type with a
 * hashable "=" -- citext, char(n), name, uuid, a nondeterministic
 * collation -- many texts are one value, and the API knows only one of
 * them: such keys are matched in the scan's list walk instead, each listed
 * id converted to the column's type and compared with the type's own
 * equality (NIMBLE_KEYS_TYPED), exactly as the recheck of a full scan does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/hash.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "nimble_fdw.h"

/* ----------------------------------------------------------------
 *		Exact keys: the texts sent to the API
 * ----------------------------------------------------------------
 */

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * The keys a scan asks for, from the texts a condition gave: ids that no
 * batch can have ("", "." and "..", which are no path segment) are
 * dropped, the rest sorted and made unique (IN ('a', 'a') is one batch).
 * Works in place; returns how many are left.  The scan and EXPLAIN's count
 * both use this, so that EXPLAIN counts what the scan asks.
 */
int
nimble_normalize_keys(char **keys, int n)
{
	int			kept = 0;
	int			u;

	for (int i = 0; i < n; i++)
	{
		const char *key = keys[i];

		if (key[0] == '\0' || strcmp(key, ".") == 0 || strcmp(key, "..") == 0)
			continue;
		keys[kept++] = keys[i];
	}
	if (kept < 2)
		return kept;
	qsort(keys, kept, sizeof(char *), key_cmp);
	u = 1;
	for (int i = 1; i < kept; i++)
	{
		if (strcmp(keys[i], keys[u - 1]) != 0)
			keys[u++] = keys[i];
	}
	return u;
}

/* Is key one of the sorted, unique keys[0..n-1]?  Its index, or -1. */
int
nimble_find_key(char **keys, int n, const char *key)
{
	char	  **hit = bsearch(&key, keys, n, sizeof(char *), key_cmp);

	return hit ? (int) (hit - keys) : -1;
}

/* ----------------------------------------------------------------
 *		Typed keys: matched in the list with the type's equality
 * ----------------------------------------------------------------
 */

typedef struct TypedKey
{
	uint32		hash;
	int			next;			/* in the bucket's chain, or -1 */
	Datum		value;
} TypedKey;

struct NimbleKeyMatch
{
	MemoryContext keys_cxt;		/* the keys: reset when they change */
	MemoryContext probe_cxt;	/* a listed id's value: reset per probe */
	Oid			collation;
	FmgrInfo	eq;				/* column value = key */
	FmgrInfo	col_hash;		/* hash of a column value */
	FmgrInfo	key_hash;		/* hash of a key, consistent with col_hash */
	FmgrInfo	col_input;		/* the column type's input function */
	Oid			col_ioparam;
	int32		col_typmod;
	int16		key_len;
	bool		key_byval;
	TypedKey   *keys;
	int			nkeys;
	int		   *buckets;		/* first key of each bucket, or -1 */
	int			nbuckets;		/* a power of two */
};

/*
 * A matcher for keys of keytype, compared by the hashable equality opno
 * (column type on its left) under collation with the values of a column of
 * coltype and coltypmod.  It lives in cxt.
 */
NimbleKeyMatch *
nimble_keymatch_create(MemoryContext cxt, Oid opno, Oid collation,
					   Oid coltype, int32 coltypmod, Oid keytype)
{
	NimbleKeyMatch *m = MemoryContextAllocZero(cxt, sizeof(NimbleKeyMatch));
	RegProcedure col_hash;
	RegProcedure key_hash;
	Oid			input;

	if (!get_op_hash_functions(opno, &col_hash, &key_hash))
		elog(ERROR, "nimble_fdw: operator %u has no hash functions", opno);
	m->keys_cxt = AllocSetContextCreate(cxt, "nimble_fdw typed keys",
										ALLOCSET_SMALL_SIZES);
	m->probe_cxt = AllocSetContextCreate(cxt, "nimble_fdw key probe",
										 ALLOCSET_SMALL_SIZES);
	m->collation = collation;
	fmgr_info_cxt(get_opcode(opno), &m->eq, cxt);
	fmgr_info_cxt(col_hash, &m->col_hash, cxt);
	fmgr_info_cxt(key_hash, &m->key_hash, cxt);
	getTypeInputInfo(coltype, &input, &m->col_ioparam);
	fmgr_info_cxt(input, &m->col_input, cxt);
	m->col_typmod = coltypmod;
	get_typlenbyval(keytype, &m->key_len, &m->key_byval);
	return m;
}

/* The keys to match (NULLs are none: a NULL equals nothing), copied. */
void
nimble_keymatch_set_keys(NimbleKeyMatch *m, const Datum *values, int n)
{
	MemoryContext oldcxt;

	MemoryContextReset(m->keys_cxt);
	oldcxt = MemoryContextSwitchTo(m->keys_cxt);
	m->nkeys = n;
	m->keys = palloc(sizeof(TypedKey) * Max(n, 1));
	m->nbuckets = 1;
	while (m->nbuckets < 2 * n)
		m->nbuckets <<= 1;
	m->buckets = palloc(sizeof(int) * m->nbuckets);
	memset(m->buckets, -1, sizeof(int) * m->nbuckets);
	for (int i = 0; i < n; i++)
	{
		TypedKey   *k = &m->keys[i];
		int			b;

		k->value = datumCopy(values[i], m->key_byval, m->key_len);
		k->hash = DatumGetUInt32(FunctionCall1Coll(&m->key_hash, m->collation,
												   k->value));
		b = k->hash & (m->nbuckets - 1);
		k->next = m->buckets[b];
		m->buckets[b] = i;
	}
	MemoryContextSwitchTo(oldcxt);
}

/* How many keys there are to match. */
int
nimble_keymatch_count(const NimbleKeyMatch *m)
{
	return m->nkeys;
}

/*
 * Does the API's id (its text, as the list gives it) equal one of the
 * keys, by the type's equality?  The id is read as the column reads it;
 * an id that is no value of the column's type equals no key.
 */
bool
nimble_keymatch_test(NimbleKeyMatch *m, const char *id)
{
	MemoryContext oldcxt;
	Datum		value;
	uint32		hash;
	bool		found = false;

	if (m->nkeys == 0)
		return false;
	MemoryContextReset(m->probe_cxt);
	oldcxt = MemoryContextSwitchTo(m->probe_cxt);
	if (nimble_input_value(&m->col_input, pstrdup(id), m->col_ioparam,
						   m->col_typmod, &value))
	{
		hash = DatumGetUInt32(FunctionCall1Coll(&m->col_hash, m->collation, value));
		for (int i = m->buckets[hash & (m->nbuckets - 1)]; i >= 0 && !found;
			 i = m->keys[i].next)
		{
			if (m->keys[i].hash == hash &&
				DatumGetBool(FunctionCall2Coll(&m->eq, m->collation, value,
											   m->keys[i].value)))
				found = true;
		}
	}
	MemoryContextSwitchTo(oldcxt);
	return found;
}
