
/*
 * ngx_pullthrough: the records kept in the metadata store, described once
 * as field tables, as nginx describes its directives with ngx_command_t.
 * The same table drives admin API input (validation with Pulp's field
 * errors), API output (secrets hidden) and the stored form (a JSON
 * document per record, secrets included: the store is 0600).
 */


#include <ngx_pt.h>
#include <ngx_pt_record.h>

#include <math.h>


#define NGX_PT_REMOTES_PATH   "remotes/container/pull-through/"
#define NGX_PT_REPOS_PATH     "repositories/container/container/"


static void ngx_pt_remote_init(void *rec);
static void ngx_pt_dist_init(void *rec);
static void ngx_pt_repo_init(void *rec);


#define NGX_PT_NO_LIMIT  0, 0, NULL

static ngx_pt_field_t  ngx_pt_remote_fields[] = {

    { "name", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_remote_t, name), NULL, 0, NGX_PT_NAME_MAX, NULL },

    { "url", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_remote_t, url), ngx_pt_check_url, 0, NGX_PT_VALUE_MAX,
      NULL },

    { "ca_cert", NGX_PT_T_STR, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, ca_cert), ngx_pt_check_cert, NGX_PT_NO_LIMIT },

    { "client_cert", NGX_PT_T_STR, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, client_cert), ngx_pt_check_cert,
      NGX_PT_NO_LIMIT },

    { "client_key", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, client_key), ngx_pt_check_key,
      NGX_PT_NO_LIMIT },

    { "tls_validation", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_remote_t, tls_validation), NULL, NGX_PT_NO_LIMIT },

    { "proxy_url", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_TRIM,
      offsetof(ngx_pt_remote_t, proxy_url), ngx_pt_check_proxy_url,
      0, NGX_PT_VALUE_MAX, NULL },

    { "proxy_username", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, proxy_username), NULL, 0, NGX_PT_VALUE_MAX,
      NULL },

    { "proxy_password", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, proxy_password), NULL, 0, NGX_PT_VALUE_MAX,
      NULL },

    { "username", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, username), NULL, 0, NGX_PT_VALUE_MAX, NULL },

    { "password", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, password), NULL, 0, NGX_PT_TEXT_MAX, NULL },

    { "pulp_labels", NGX_PT_T_LABELS, 0,
      offsetof(ngx_pt_remote_t, labels), NULL, NGX_PT_NO_LIMIT },

    { "download_concurrency", NGX_PT_T_INT, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, download_concurrency), NULL, 1, 1000, NULL },

    { "max_retries", NGX_PT_T_INT, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, max_retries), NULL, 0, 100, NULL },

    { "policy", NGX_PT_T_STR, 0,
      offsetof(ngx_pt_remote_t, policy), ngx_pt_check_policy,
      NGX_PT_NO_LIMIT },

    { "total_timeout", NGX_PT_T_NUM, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, total_timeout), NULL, 0, 0, NULL },

    { "connect_timeout", NGX_PT_T_NUM, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, connect_timeout), NULL, 0, 0, NULL },

    { "sock_connect_timeout", NGX_PT_T_NUM, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, sock_connect_timeout), NULL, 0, 0, NULL },

    { "sock_read_timeout", NGX_PT_T_NUM, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, sock_read_timeout), NULL, 0, 0, NULL },

    { "headers", NGX_PT_T_HEADERS, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, headers), NULL, NGX_PT_NO_LIMIT },

    { "rate_limit", NGX_PT_T_INT, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, rate_limit), NULL, 0, 1000000, NULL },

    { "includes", NGX_PT_T_STRLIST, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, includes), NULL, 0, 1024, NULL },

    { "excludes", NGX_PT_T_STRLIST, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, excludes), NULL, 0, 1024, NULL },

    /* ours: seconds a cached tag is served before the upstream is asked
     * again; null: the registry location's pullthrough_tag_ttl */
    { "tag_ttl", NGX_PT_T_NUM, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_remote_t, tag_ttl), NULL, 0, 31536000, NULL },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


static ngx_pt_field_t  ngx_pt_pt_dist_fields[] = {

    { "base_path", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_dist_t, base_path), ngx_pt_check_base_path,
      NGX_PT_NO_LIMIT },

    { "content_guard", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, content_guard), ngx_pt_check_content_guard,
      NGX_PT_NO_LIMIT },

    { "hidden", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, hidden), NULL, NGX_PT_NO_LIMIT },

    { "pulp_labels", NGX_PT_T_LABELS, 0,
      offsetof(ngx_pt_dist_t, labels), NULL, NGX_PT_NO_LIMIT },

    { "name", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_dist_t, name), NULL, 0, NGX_PT_NAME_MAX, NULL },

    { "remote", NGX_PT_T_REF, NGX_PT_F_REQUIRED,
      offsetof(ngx_pt_dist_t, remote), NULL, 0, 0, NGX_PT_REMOTES_PATH },

    { "private", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, private), NULL, NGX_PT_NO_LIMIT },

    { "description", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, description), NULL, 0, NGX_PT_TEXT_MAX, NULL },

    /* ours: the content of every image pulled through it is never
     * evicted */
    { "retain", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, retain), NULL, NGX_PT_NO_LIMIT },

    { "distributions", NGX_PT_T_STR, NGX_PT_F_READONLY,
      0, NULL, NGX_PT_NO_LIMIT },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


/* the per-image distributions made by pulls: but for a PATCH of
 * description, pulp_labels and retain, read-only in the API */

static ngx_pt_field_t  ngx_pt_dist_fields[] = {

    { "base_path", NGX_PT_T_STR, NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, base_path), NULL, NGX_PT_NO_LIMIT },

    { "content_guard", NGX_PT_T_STR,
      NGX_PT_F_NULLABLE|NGX_PT_F_BLANK|NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, content_guard), NULL, NGX_PT_NO_LIMIT },

    { "hidden", NGX_PT_T_BOOL, NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, hidden), NULL, NGX_PT_NO_LIMIT },

    { "pulp_labels", NGX_PT_T_LABELS, 0,
      offsetof(ngx_pt_dist_t, labels), NULL, NGX_PT_NO_LIMIT },

    { "name", NGX_PT_T_STR, NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, name), NULL, NGX_PT_NO_LIMIT },

    { "repository", NGX_PT_T_REF, NGX_PT_F_NULLABLE|NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, repository), NULL, 0, 0, NGX_PT_REPOS_PATH },

    /* the pull-through remote's; shown as the per-image remote's href */
    { "remote", NGX_PT_T_REF,
      NGX_PT_F_NULLABLE|NGX_PT_F_FIXED|NGX_PT_F_HOOKED,
      offsetof(ngx_pt_dist_t, remote), NULL, 0, 0, NGX_PT_REMOTES_PATH },

    { "private", NGX_PT_T_BOOL, NGX_PT_F_FIXED,
      offsetof(ngx_pt_dist_t, private), NULL, NGX_PT_NO_LIMIT },

    { "description", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, description), NULL, NGX_PT_NO_LIMIT },

    /* ours: its content is never evicted (the only field a PATCH sets,
     * with description and pulp_labels) */
    { "retain", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, retain), NULL, NGX_PT_NO_LIMIT },

    { "parent", NGX_PT_T_STR, NGX_PT_F_INTERNAL|NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_dist_t, parent), NULL, NGX_PT_NO_LIMIT },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


static ngx_pt_field_t  ngx_pt_repo_fields[] = {

    { "name", NGX_PT_T_STR, 0,
      offsetof(ngx_pt_repo_t, name), NULL, NGX_PT_NO_LIMIT },

    { "description", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_repo_t, description), NULL, NGX_PT_NO_LIMIT },

    { "retain_repo_versions", NGX_PT_T_INT, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_repo_t, retain_repo_versions), NULL, NGX_PT_NO_LIMIT },

    { "remote", NGX_PT_T_REF, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_repo_t, remote), NULL, 0, 0, NGX_PT_REMOTES_PATH },

    { "pulp_labels", NGX_PT_T_LABELS, 0,
      offsetof(ngx_pt_repo_t, labels), NULL, NGX_PT_NO_LIMIT },

    { "latest_version", NGX_PT_T_INT, NGX_PT_F_INTERNAL,
      offsetof(ngx_pt_repo_t, latest_version), NULL, NGX_PT_NO_LIMIT },

    { "parent", NGX_PT_T_STR, NGX_PT_F_INTERNAL|NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_repo_t, parent), NULL, NGX_PT_NO_LIMIT },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


static ngx_pt_field_t  ngx_pt_task_fields[] = {

    { "name", NGX_PT_T_STR, 0,
      offsetof(ngx_pt_task_t, name), NULL, NGX_PT_NO_LIMIT },

    { "state", NGX_PT_T_STR, 0,
      offsetof(ngx_pt_task_t, state), NULL, NGX_PT_NO_LIMIT },

    { "error", NGX_PT_T_STR, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_task_t, error), NULL, NGX_PT_NO_LIMIT },

    { "created_resources", NGX_PT_T_STRLIST, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_task_t, created), NULL, NGX_PT_NO_LIMIT },

    /* shown as reserved_resources_record; null in tasks stored before */
    { "reserved_resources", NGX_PT_T_STRLIST, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_task_t, reserved), NULL, NGX_PT_NO_LIMIT },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


ngx_pt_type_t  ngx_pt_remote_type = {
    "remote", NGX_PT_REMOTES_PATH,
    "container.containerpullthroughremote",
    ngx_pt_remote_fields, sizeof(ngx_pt_remote_t), ngx_pt_remote_init
};

ngx_pt_type_t  ngx_pt_pt_dist_type = {
    "distribution",
    "distributions/container/pull-through/",
    "container.containerpullthroughdistribution",
    ngx_pt_pt_dist_fields, sizeof(ngx_pt_dist_t), ngx_pt_dist_init
};

ngx_pt_type_t  ngx_pt_dist_type = {
    "distribution",
    "distributions/container/container/",
    "container.containerdistribution",
    ngx_pt_dist_fields, sizeof(ngx_pt_dist_t), ngx_pt_dist_init
};

ngx_pt_type_t  ngx_pt_repo_type = {
    "repository", NGX_PT_REPOS_PATH,
    "container.containerrepository",
    ngx_pt_repo_fields, sizeof(ngx_pt_repo_t), ngx_pt_repo_init
};

ngx_pt_type_t  ngx_pt_task_type = {
    "task", "tasks/", "core.task",
    ngx_pt_task_fields, sizeof(ngx_pt_task_t), NULL
};


static void
ngx_pt_remote_init(void *rec)
{
    ngx_pt_remote_t  *remote = rec;

    ngx_str_set(&remote->policy, "on_demand");
    remote->tls_validation = 1;
    remote->download_concurrency = NGX_PT_NULL_INT;
    remote->max_retries = NGX_PT_NULL_INT;
    remote->rate_limit = NGX_PT_NULL_INT;
    remote->total_timeout = NAN;
    remote->connect_timeout = NAN;
    remote->sock_connect_timeout = NAN;
    remote->sock_read_timeout = NAN;
    remote->tag_ttl = NAN;
}


static void
ngx_pt_dist_init(void *rec)
{
    /* every field of a distribution starts as zero, null or false */
}


static void
ngx_pt_repo_init(void *rec)
{
    ngx_pt_repo_t  *repo = rec;

    repo->retain_repo_versions = 1;
}
