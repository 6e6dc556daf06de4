/*-------------------------------------------------------------------------
 *
 * scrape.c
 *		  A scraping API's batch progress, described as data.
 *
 * One endpoint, GET {url}/scrape/batch/{batch_id}/progress, answers
 * {"success": true, "data": {...progress..., "jobs": [...]}}: the progress
 * is batch_progress (and batches), its jobs are batch_tasks.  The API lists
 * no batches, so every table needs batch ids.  The key goes in X-API-Key.
 * The API documents its success body only; errors are taken to be
 * {"success": false, "error": {"code", "message"}}, and no rate limit is
 * documented.  test/mock_scrape.py is shaped the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "api.h"

/* the same response, read for its progress or for its jobs */
static const NimbleEndpoint scrape_progress = {
	.path = "/scrape/batch/{key}/progress",
	.rows = "data",
	.rows_required = true,
	.rows_single = true,
};

static const NimbleEndpoint scrape_jobs = {
	.path = "/scrape/batch/{key}/progress",
	.rows = "data.jobs",
	.rows_required = true,
};

static const NimbleColumnDef scrape_progress_columns[] = {
	{"batch_id", "text", NULL, "batch_id", NULL},
	{"total_urls", "integer", NULL, "total_urls", NULL},
	{"completed", "integer", NULL, "completed", NULL},
	{"failed", "integer", NULL, "failed", NULL},
	{"pending", "integer", NULL, "pending", NULL},
	{"total_items_extracted", "bigint", NULL, "total_items_extracted", NULL},
	{"estimated_completion", "timestamptz", NULL, "estimated_completion", NULL},
	{"job_count", "integer", NULL, "#jobs", NULL},
};

static const NimbleColumnDef scrape_jobs_columns[] = {
	{"batch_id", "text", NULL, "$key", NULL},
	{"task_id", "text", NULL, "job_id", NULL},
	{"url", "text", NULL, "url", NULL},
	{"state", "text", NULL, "status", NULL},
	{"items_extracted", "integer", NULL, "items_extracted", NULL},
};

static const NimbleResourceDef scrape_resources[] = {
	{
		.name = "batches",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = scrape_progress_columns,
		.ncolumns = lengthof(scrape_progress_columns),
		.keyed = &scrape_progress,
	},
	{
		.name = "batch_tasks",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = scrape_jobs_columns,
		.ncolumns = lengthof(scrape_jobs_columns),
		.keyed = &scrape_jobs,
	},
	{
		.name = "batch_progress",
		.key_column = "batch_id",
		.unit_noun = "batch",
		.unit_plural = "batches",
		.columns = scrape_progress_columns,
		.ncolumns = lengthof(scrape_progress_columns),
		.keyed = &scrape_progress,
	},
};

/* {"success": false, "error": {"code": ..., "message": ...}} */
static const char *const scrape_error_paths[] = {"error.message", "error", "message", NULL};

const NimbleApiDef nimble_api_def_scrape = {
	.name = "scrape",
	.title = "scraping",
	.default_url = "https://api.aitronos.com/api/v1",
	.example_url = "https://api.aitronos.com/api/v1",
	.rate_limit = {0, 0},		/* no documented limit */
	.auth_header = "X-API-Key: %s",
	.key_source = "the API's account settings",
	.resources = scrape_resources,
	.nresources = lengthof(scrape_resources),
	.error_message_paths = scrape_error_paths,
};
