/*-------------------------------------------------------------------------
 *
 * routes_nimble.c
 *		  The Nimble batch API described as data.
 *
 * Nimble's endpoints, resources and field names: the batch list, a batch's
 * tasks, its progress, and the tasks API.  Facts the spec leaves open are in
 * ../shared/design.md; the mock in test/mock_nimble.py is shaped the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nimble_fdw.h"

/* Endpoint indexes of the Nimble table. */
enum
{
	NIMBLE_EP_LIST,
	NIMBLE_EP_DETAILS,
	NIMBLE_EP_PROGRESS,
	NIMBLE_EP_TASKS,
	NIMBLE_EP_TASK,
	NIMBLE_EP_TASK_RESULTS
};

static const NimbleEndpoint nimble_endpoints[] = {
	[NIMBLE_EP_LIST] = {
		.name = "list",
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
	},
	[NIMBLE_EP_DETAILS] = {
		.name = "details",
		.path = "/batches/{key}",
		.rows = "tasks",
		.rows_required = true,
	},
	[NIMBLE_EP_PROGRESS] = {
		.name = "progress",
		.path = "/batches/{key}/progress",
		.rows = "",
	},
	/* the tasks of every batch, paged like /batches */
	[NIMBLE_EP_TASKS] = {
		.name = "tasks",
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
	},
	/* one task: {"task": {...}} */
	[NIMBLE_EP_TASK] = {
		.name = "task",
		.path = "/tasks/{key}",
		.rows = "task",
		.rows_required = true,
		.rows_single = true,
	},
	/* a finished task's results: the body is the result */
	[NIMBLE_EP_TASK_RESULTS] = {
		.name = "results",
		.path = "/tasks/{key}/results",
		.rows = "",
	},
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
		.columns = nimble_batches_columns,
		.ncolumns = lengthof(nimble_batches_columns),
		.keyed_endpoint = NIMBLE_EP_PROGRESS,
		.list_endpoint = NIMBLE_EP_LIST,
		.list_rows = true,
		.extra_endpoint = NIMBLE_EP_PROGRESS,
	},
	{
		.name = "batch_tasks",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.columns = nimble_batch_tasks_columns,
		.ncolumns = lengthof(nimble_batch_tasks_columns),
		.keyed_endpoint = NIMBLE_EP_DETAILS,
		.list_endpoint = NIMBLE_EP_LIST,
		.list_rows = false,
		.extra_endpoint = -1,
	},
	{
		.name = "batch_progress",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.columns = nimble_batch_progress_columns,
		.ncolumns = lengthof(nimble_batch_progress_columns),
		.keyed_endpoint = NIMBLE_EP_PROGRESS,
		.list_endpoint = NIMBLE_EP_LIST,
		.list_rows = false,
		.extra_endpoint = -1,
	},
	{
		.name = "tasks",
		.key_column = "task_id",
		.unit_noun = "task",
		.columns = nimble_tasks_columns,
		.ncolumns = lengthof(nimble_tasks_columns),
		.keyed_endpoint = NIMBLE_EP_TASK,
		.list_endpoint = NIMBLE_EP_TASKS,
		.list_rows = true,
		.extra_endpoint = -1,
	},
	{
		.name = "task_results",
		.key_column = "task_id",
		.unit_noun = "task",
		.columns = nimble_task_results_columns,
		.ncolumns = lengthof(nimble_task_results_columns),
		.keyed_endpoint = NIMBLE_EP_TASK_RESULTS,
		.list_endpoint = -1,
		.list_rows = false,
		.extra_endpoint = -1,
	},
};

/* Nimble's error bodies carry "msg" (400/402/429), "error" (404), "message" (500). */
static const char *const nimble_error_paths[] = {"msg", "error", "message", NULL};

const NimbleApiDef nimble_api_def_nimble = {
	.name = "nimble",
	.title = "Nimble",
	.default_url = "https://sdk.nimbleway.com/v1",
	.example_url = "https://sdk.nimbleway.com/v1",
	.default_max_rps = 83,		/* the default plan's limit, per key */
	.auth_header = "Authorization: Bearer %s",
	.endpoints = nimble_endpoints,
	.nendpoints = lengthof(nimble_endpoints),
	.resources = nimble_resources,
	.nresources = lengthof(nimble_resources),
	.error_message_paths = nimble_error_paths,
};
