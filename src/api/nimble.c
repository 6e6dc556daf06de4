/*-------------------------------------------------------------------------
 *
 * nimble.c
 *		  The Nimble web-data API's batch jobs, described as data.
 *
 * Nimble's endpoints, resources and field names: the batch list, a batch's
 * tasks, its progress, and the tasks API.  Where the API reference is
 * silent, the SDKs decide: the list takes the cursor and limit parameters
 * of the sibling GET /tasks; the SDKs retry 408, 409, 429 and 5xx (555 is
 * Nimble's own request timeout); the default plan allows 83 requests a
 * second per key.  test/mock_nimble.py is shaped the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "api.h"

/* GET /batches: cursor pagination, newest first */
static const NimbleEndpoint batch_list = {
	.path = "/batches",
	.rows = "data",
	.rows_required = true,
	.paging = NIMBLE_PAGING_CURSOR,
	.cursor_param = "cursor",
	.limit_param = "limit",
	.next_cursor = "pagination.next_cursor",
	.has_next = "pagination.has_next",
	.total = "pagination.total",
	.item_key = "id",
};

/* a batch with its tasks */
static const NimbleEndpoint batch_details = {
	.path = "/batches/{key}",
	.rows = "tasks",
	.rows_required = true,
};

static const NimbleEndpoint batch_progress = {
	.path = "/batches/{key}/progress",
	.rows = "",
};

/* the tasks of every batch, paged like /batches */
static const NimbleEndpoint task_list = {
	.path = "/tasks",
	.rows = "data",
	.rows_required = true,
	.paging = NIMBLE_PAGING_CURSOR,
	.cursor_param = "cursor",
	.limit_param = "limit",
	.next_cursor = "pagination.next_cursor",
	.has_next = "pagination.has_next",
	.total = "pagination.total",
	.item_key = "id",
};

/* one task: {"task": {...}} */
static const NimbleEndpoint task = {
	.path = "/tasks/{key}",
	.rows = "task",
	.rows_required = true,
	.rows_single = true,
};

/* a finished task's results: the body is the result */
static const NimbleEndpoint task_results = {
	.path = "/tasks/{key}/results",
	.rows = "",
};

/*
 * batches: rows are the list's items.  The progress columns are not in the
 * list, so they come from /progress, per row, and only when the query uses
 * them.  A query that uses only columns /progress has can go there straight
 * by key.
 */
static const NimbleColumnDef nimble_batches_columns[] = {
	{"batch_id", "text", "id", "id", NULL},
	{"account_name", "text", "account_name", NULL, NULL},
	{"username", "text", "username", NULL, NULL},
	{"completed", "boolean", "completed", "completed", NULL},
	{"created_at", "timestamptz", "created_at", NULL, NULL},
	{"task_ids", "text[]", "tasks", NULL, NULL},
	{"task_count", "integer", "#tasks", NULL, NULL},
	{"completed_count", "integer", NULL, "completed_count", "completed_count"},
	{"progress", "numeric", NULL, "progress", "progress"},
	{"completed_at", "timestamptz", NULL, "completed_at", "completed_at"},
};

/* batch_tasks: one row per non-null entry of a batch's "tasks". */
static const NimbleColumnDef nimble_batch_tasks_columns[] = {
	{"batch_id", "text", NULL, "$key", NULL},
	{"task_id", "text", NULL, "id", NULL},
	{"state", "text", NULL, "state", NULL},
	{"status_code", "integer", NULL, "status_code", NULL},
	{"api_type", "text", NULL, "api_type", NULL},
	{"error", "text", NULL, "error", NULL},
	{"error_type", "text", NULL, "error_type", NULL},
	{"created_at", "timestamptz", NULL, "created_at", NULL},
	{"modified_at", "timestamptz", NULL, "modified_at", NULL},
	{"account_name", "text", NULL, "account_name", NULL},
	{"input", "jsonb", NULL, "input", NULL},
	{"query", "jsonb", NULL, "_query", NULL},
	{"output_url", "text", NULL, "output_url", NULL},
	{"status_url", "text", NULL, "status_url", NULL},
	{"download_url", "text", NULL, "download_url", NULL},
};

static const NimbleColumnDef nimble_batch_progress_columns[] = {
	{"batch_id", "text", NULL, "id", NULL},
	{"completed", "boolean", NULL, "completed", NULL},
	{"completed_count", "integer", NULL, "completed_count", NULL},
	{"progress", "numeric", NULL, "progress", NULL},
	{"completed_at", "timestamptz", NULL, "completed_at", NULL},
};

/*
 * tasks: the same task objects as batch_tasks, from /tasks; /tasks/{id}
 * answers the same object.
 */
#define BOTH NIMBLE_COLUMN_LISTED_AND_KEYED

static const NimbleColumnDef nimble_tasks_columns[] = {
	BOTH("batch_id", "text", "batch_id"),
	BOTH("task_id", "text", "id"),
	BOTH("state", "text", "state"),
	BOTH("status_code", "integer", "status_code"),
	BOTH("api_type", "text", "api_type"),
	BOTH("error", "text", "error"),
	BOTH("error_type", "text", "error_type"),
	BOTH("created_at", "timestamptz", "created_at"),
	BOTH("modified_at", "timestamptz", "modified_at"),
	BOTH("account_name", "text", "account_name"),
	BOTH("input", "jsonb", "input"),
	BOTH("query", "jsonb", "_query"),
	BOTH("output_url", "text", "output_url"),
	BOTH("status_url", "text", "status_url"),
	BOTH("download_url", "text", "download_url"),
};

/* task_results: one row per task id asked for; no list to walk. */
static const NimbleColumnDef nimble_task_results_columns[] = {
	{"task_id", "text", NULL, "$key", NULL},
	{"result", "jsonb", NULL, "$row", NULL},
};

static const NimbleResourceDef nimble_resources[] = {
	{
		.name = "batches",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = nimble_batches_columns,
		.ncolumns = lengthof(nimble_batches_columns),
		.keyed = &batch_progress,
		.list = &batch_list,
		.list_rows = true,
		.extra = &batch_progress,
	},
	{
		.name = "batch_tasks",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = nimble_batch_tasks_columns,
		.ncolumns = lengthof(nimble_batch_tasks_columns),
		.keyed = &batch_details,
		.list = &batch_list,
	},
	{
		.name = "batch_progress",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = nimble_batch_progress_columns,
		.ncolumns = lengthof(nimble_batch_progress_columns),
		.keyed = &batch_progress,
		.list = &batch_list,
	},
	{
		.name = "tasks",
		.key_column = "task_id",
		.unit_noun = "task",
		.unit_plural = "tasks",
		.columns = nimble_tasks_columns,
		.ncolumns = lengthof(nimble_tasks_columns),
		.keyed = &task,
		.list = &task_list,
		.list_rows = true,
	},
	{
		.name = "task_results",
		.key_column = "task_id",
		.unit_noun = "task",
		.unit_plural = "tasks",
		.columns = nimble_task_results_columns,
		.ncolumns = lengthof(nimble_task_results_columns),
		.keyed = &task_results,
	},
};

/* Nimble's error bodies carry "msg" (400/402/429), "error" (404), "message" (500). */
static const char *const nimble_error_paths[] = {"msg", "error", "message", NULL};

static const NimbleStatusDef nimble_statuses[] = {
	{555, true, "The API timed out on its side (its own request timeout); try again later."},
	{0},
};

/* a batch is done when its progress says "completed" */
static const NimbleWaitDef nimble_wait = {
	.resource = "batch_progress",
	.done_column = "completed",
	.progress_column = "progress",
};

const NimbleApiDef nimble_api_def_nimble = {
	.name = "nimble",
	.title = "Nimble",
	.default_url = "https://sdk.nimbleway.com/v1",
	.example_url = "https://sdk.nimbleway.com/v1",
	.rate_limit = {5000, 60},	/* "83 QPS (5,000 QPM)" per key, a minute's budget */
	.auth_header = "Authorization: Bearer %s",
	.key_source = "the Nimble dashboard",
	.resources = nimble_resources,
	.nresources = lengthof(nimble_resources),
	.error_message_paths = nimble_error_paths,
	.statuses = nimble_statuses,
	.wait = &nimble_wait,
};
