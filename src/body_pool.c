/*-------------------------------------------------------------------------
 *
 * body_pool.c
 *		  Response-body buffers, reused within a transaction.
 *
 * A scan receives one large body after another (a batch's details run to
 * hundreds of kilobytes).  Each fresh malloc() of that size is fresh pages
 * from the kernel, and faulting them in cost about a tenth of a scan's
 * time; a buffer freed by one page is therefore kept for the next.  At most
 * NIMBLE_SPARE_BODIES buffers and NIMBLE_SPARE_BYTES bytes are kept, and
 * all of them are freed when the transaction ends, so an idle backend holds
 * none.
 *
 * Buffers are plain malloc() memory, because curl's write callback fills
 * them and must not throw; nimble_body_take() and nimble_body_give() never
 * throw either.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"

#include "nimble_fdw.h"

#define NIMBLE_SPARE_BODIES 16
#define NIMBLE_SPARE_BYTES ((size_t) 64 * 1024 * 1024)

typedef struct SpareBody
{
	char	   *data;
	size_t		cap;
} SpareBody;

static SpareBody spares[NIMBLE_SPARE_BODIES];
static int	nspares = 0;
static size_t spare_bytes = 0;

/*
 * A spare buffer (the largest: the next body is likely as big as the last)
 * and its capacity in *cap; NULL and 0 when there is none.
 */
char *
nimble_body_take(size_t *cap)
{
	int			best = -1;
	char	   *data;

	for (int i = 0; i < nspares; i++)
	{
		if (best < 0 || spares[i].cap > spares[best].cap)
			best = i;
	}
	if (best < 0)
	{
		*cap = 0;
		return NULL;
	}
	data = spares[best].data;
	*cap = spares[best].cap;
	spare_bytes -= spares[best].cap;
	spares[best] = spares[--nspares];
	return data;
}

/* Done with a buffer of cap bytes: keep it for the next body, or free it. */
void
nimble_body_give(char *data, size_t cap)
{
	if (data == NULL)
		return;

	/*
	 * Bodies freed as a transaction ends (its memory goes after the end
	 * callback below has run) are not kept for a transaction that may never
	 * come.
	 */
	if (IsTransactionState() &&
		nspares < NIMBLE_SPARE_BODIES && spare_bytes + cap <= NIMBLE_SPARE_BYTES)
	{
		spares[nspares].data = data;
		spares[nspares].cap = cap;
		nspares++;
		spare_bytes += cap;
	}
	else
		free(data);
}

/* Release every spare buffer. */
static void
body_pool_clear(void)
{
	for (int i = 0; i < nspares; i++)
		free(spares[i].data);
	nspares = 0;
	spare_bytes = 0;
}

static void
body_pool_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			body_pool_clear();
			break;
		default:
			break;
	}
}

/*
 * Give the kept buffers back at the end of each transaction.  Called from
 * _PG_init.
 */
void
nimble_body_pool_init(void)
{
	RegisterXactCallback(body_pool_xact_callback, NULL);
}
