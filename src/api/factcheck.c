/*-------------------------------------------------------------------------
 *
 * factcheck.c
 *		  A fact-checking API's batches, described as data.
 *
 * GET {url}/batch/{id} answers the batch object itself; GET {url}/batch
 * lists them, paged by limit and offset, as {"data": [...], "pagination":
 * {"total", "limit", "offset", "hasMore"}}.  The API has no per-item
 * endpoint, so it serves batches and batch_progress only.  Its reference
 * documents GET /batch/{id} alone: the list's shape and the error body
 * ({"error": {"code", "message"}}) follow its other endpoints, and it names
 * no host, so a server needs a url.  test/mock_factcheck.py is shaped the
 * same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "api.h"

/* GET /batch?limit=&offset= */
static const NimbleEndpoint factcheck_list = {
	.path = "/batch",
	.rows = "data",
	.rows_required = true,
	.paging = NIMBLE_PAGING_OFFSET,
	.offset_param = "offset",
	.limit_param = "limit",
	.has_next = "pagination.hasMore",
	.total = "pagination.total",
	.item_key = "id",
};

/* the batch object itself */
static const NimbleEndpoint factcheck_batch = {
	.path = "/batch/{key}",
	.rows = "",
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
		.unit_plural = "batches",
		.columns = factcheck_batches_columns,
		.ncolumns = lengthof(factcheck_batches_columns),
		.keyed = &factcheck_batch,
		.list = &factcheck_list,
		.list_rows = true,
	},
	{
		.name = "batch_progress",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = factcheck_progress_columns,
		.ncolumns = lengthof(factcheck_progress_columns),
		.keyed = &factcheck_batch,
		.list = &factcheck_list,
		.list_rows = true,
	},
};

/* {"error": {"code": ..., "message": ...}} */
static const char *const factcheck_error_paths[] = {"error.message", "message", NULL};

const NimbleApiDef nimble_api_def_factcheck = {
	.name = "factcheck",
	.title = "fact-check",
	.default_url = NULL,		/* its reference names no host */
	.example_url = "https://factcheck.example.com/v1",
	.rate_limit = {0, 0},		/* no documented limit */
	.auth_header = "Authorization: Bearer %s",
	.key_source = "the API's account settings",
	.resources = factcheck_resources,
	.nresources = lengthof(factcheck_resources),
	.error_message_paths = factcheck_error_paths,
};
