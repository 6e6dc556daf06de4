/*-------------------------------------------------------------------------
 *
 * routes_factcheck.c
 *		  A fact-checking API's batches, described as data.
 *
 * GET {url}/batch/{id} answers the batch object itself; GET {url}/batch
 * lists them, paged by limit and offset, as {"data": [...], "pagination":
 * {"total", "limit", "offset", "hasMore"}}.  The API has no per-item
 * endpoint, so it serves batches and batch_progress only.  The seed is
 * ../shared/seeds/004_*; test/mock_factcheck.py is shaped the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nimble_fdw.h"

enum
{
	FACTCHECK_EP_LIST,
	FACTCHECK_EP_BATCH
};

static const NimbleEndpoint factcheck_endpoints[] = {
	[FACTCHECK_EP_LIST] = {
		.name = "list",
		.path = "/batch",
		.rows = "data",
		.rows_required = true,
		.paging = NIMBLE_PAGING_OFFSET,
		.offset_param = "offset",
		.limit_param = "limit",
		.has_next = "pagination.hasMore",
		.total = "pagination.total",
		.item_key = "id",
	},
	[FACTCHECK_EP_BATCH] = {
		.name = "batch",
		.path = "/batch/{key}",
		.rows = "",
	},
};

/* the list's items are the same objects as GET /batch/{id} */
#define BOTH NIMBLE_COLUMN_LISTED_AND_KEYED

static const NimbleColumnDef factcheck_batches_columns[] = {
	BOTH("batch_id", "text", "id"),
	BOTH("name", "text", "name"),
	BOTH("input_format", "text", "inputFormat"),
	BOTH("original_file_name", "text", "originalFileName"),
	BOTH("status", "text", "status"),
	BOTH("total_items", "integer", "totalItems"),
	BOTH("processed_items", "integer", "processedItems"),
	BOTH("success_count", "integer", "successCount"),
	BOTH("failure_count", "integer", "failureCount"),
	BOTH("methods_config", "jsonb", "methodsConfig"),
	BOTH("context", "jsonb", "context"),
	BOTH("total_cost_cents", "bigint", "totalCostCents"),
	BOTH("total_input_tokens", "bigint", "totalInputTokens"),
	BOTH("total_output_tokens", "bigint", "totalOutputTokens"),
	BOTH("error_message", "text", "errorMessage"),
	BOTH("validation_errors", "jsonb", "validationErrors"),
	BOTH("created_at", "timestamptz", "createdAt"),
	BOTH("started_at", "timestamptz", "startedAt"),
	BOTH("completed_at", "timestamptz", "completedAt"),
	BOTH("expires_at", "timestamptz", "expiresAt"),
};

static const NimbleColumnDef factcheck_progress_columns[] = {
	BOTH("batch_id", "text", "id"),
	BOTH("status", "text", "status"),
	BOTH("total_items", "integer", "totalItems"),
	BOTH("processed_items", "integer", "processedItems"),
	BOTH("success_count", "integer", "successCount"),
	BOTH("failure_count", "integer", "failureCount"),
	BOTH("started_at", "timestamptz", "startedAt"),
	BOTH("completed_at", "timestamptz", "completedAt"),
};

static const NimbleResourceDef factcheck_resources[] = {
	{
		.name = "batches",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.columns = factcheck_batches_columns,
		.ncolumns = lengthof(factcheck_batches_columns),
		.keyed_endpoint = FACTCHECK_EP_BATCH,
		.list_endpoint = FACTCHECK_EP_LIST,
		.list_rows = true,
		.extra_endpoint = -1,
	},
	{
		.name = "batch_progress",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.columns = factcheck_progress_columns,
		.ncolumns = lengthof(factcheck_progress_columns),
		.keyed_endpoint = FACTCHECK_EP_BATCH,
		.list_endpoint = FACTCHECK_EP_LIST,
		.list_rows = true,
		.extra_endpoint = -1,
	},
};

/* {"error": {"code": ..., "message": ...}} */
static const char *const factcheck_error_paths[] = {"error.message", "message", NULL};

const NimbleApiDef nimble_api_def_factcheck = {
	.name = "factcheck",
	.title = "fact-check",
	.default_url = NULL,		/* the seed names no host */
	.example_url = "https://factcheck.example.com/v1",
	.default_max_rps = 0,		/* no documented limit */
	.auth_header = "Authorization: Bearer %s",
	.endpoints = factcheck_endpoints,
	.nendpoints = lengthof(factcheck_endpoints),
	.resources = factcheck_resources,
	.nresources = lengthof(factcheck_resources),
	.error_message_paths = factcheck_error_paths,
};
