
/*
 * ngx_pullthrough: the admin API's views of the store as a whole, Pulp's
 * status (GET status/) with the cache's own figures, and Pulp's orphan
 * cleanup (POST orphans/cleanup/). Orphans are removed by the cache
 * manager (ngx_pt_evict.c), not by the worker that answers: the request
 * records a waiting task and asks the manager through the shared zone,
 * which runs one garbage collection for every request waiting and then
 * completes their tasks, so that Pulp clients poll the task as they do
 * with Pulp.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>
#include <ngx_pt_shm.h>

#include <sys/statvfs.h>


#define NGX_PT_TASK_ORPHANS  "pulpcore.app.tasks.orphan.orphan_cleanup"

/* Pulp's default orphan_protection_time, in minutes */
#define NGX_PT_ORPHAN_PROTECTION       1440


/* the OpenAPI document's part of status/ and orphans/cleanup/ */

static ngx_pt_admin_prop_t  ngx_pt_admin_status_props[] = {
    { "versions", "objects" },
    { "online_workers", "objects" },
    { "online_api_apps", "objects" },
    { "online_content_apps", "objects" },
    { "database_connection", "object" },
    { "redis_connection", "object" },
    { "storage", "object" },
    { "content_settings", "object" },
    { "domain_enabled", "boolean" },
    { "cache", "object" },               /* ours: the store's figures */
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_status_api = {
    "status", NULL, "Status", "Status", ngx_pt_admin_status_props, NULL,
    NULL, "status_read", NULL, NULL, 1, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_orphans_body[] = {
    { "orphan_protection_time", "integer?" },
    { "content_hrefs", "array?" },
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_orphans_api = {
    "orphans_cleanup", NULL, "OrphansCleanup", "Orphans: Cleanup", NULL,
    NULL, ngx_pt_admin_orphans_body, NULL, "orphans_cleanup_cleanup", NULL, 1, 0
};


static void ngx_pt_admin_status_apps(ngx_pt_admin_t *ctx, const char *key,
    ngx_str_t *now);
static void ngx_pt_admin_status_version(yajl_gen g, const char *component,
    const char *version, const char *package, const char *module);


ngx_int_t
ngx_pt_admin_status(ngx_pt_admin_t *ctx)
{
    off_t                              total, free, used;
    yajl_gen                           g;
    MDB_txn                           *txn;
    ngx_str_t                          now, origin;
    struct statvfs                     fs;
    ngx_pt_totals_t                    t;
    ngx_http_pullthrough_main_conf_t  *pmcf;

    g = ctx->g;
    pmcf = ngx_http_get_module_main_conf(ctx->r, ngx_http_pullthrough_module);

    if (ngx_pt_now(ctx->pool, &now) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t.bytes = 0;
    t.files = 0;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    (void) ngx_pt_totals_get(ctx->log, txn, &t);
    ngx_pt_txn_abort(txn);

    total = free = used = -1;

    if (statvfs((char *) pmcf->path.data, &fs) == 0) {
        total = (off_t) fs.f_blocks * fs.f_frsize;
        free = (off_t) fs.f_bavail * fs.f_frsize;
        used = total - (off_t) fs.f_bfree * fs.f_frsize;
    }

    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "versions");
    ngx_pt_json_array_open(g);
    ngx_pt_admin_status_version(g, "core", NGX_PT_PULP_CORE_VERSION,
                                "pulpcore", "pulpcore.app");
    ngx_pt_admin_status_version(g, "container", NGX_PT_PULP_CONTAINER_VERSION,
                                "pulp-container", "pulp_container.app");
    ngx_pt_json_array_close(g);

    ngx_pt_admin_status_apps(ctx, "online_workers", &now);
    ngx_pt_admin_status_apps(ctx, "online_api_apps", &now);
    ngx_pt_admin_status_apps(ctx, "online_content_apps", &now);

    ngx_pt_json_key(g, "database_connection");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "connected");
    ngx_pt_json_bool(g, ngx_pt_store_ready());
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "redis_connection");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "connected");
    ngx_pt_json_bool(g, 0);
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "storage");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "total");
    ngx_pt_json_int(g, total >= 0 ? total : NGX_PT_NULL_INT);
    ngx_pt_json_key(g, "used");
    ngx_pt_json_int(g, used >= 0 ? used : NGX_PT_NULL_INT);
    ngx_pt_json_key(g, "free");
    ngx_pt_json_int(g, free >= 0 ? free : NGX_PT_NULL_INT);
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "content_settings");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "content_origin");

    if (ctx->r->headers_in.server.len) {
        origin.data = ngx_pnalloc(ctx->pool,
                                  sizeof("https://")
                                  + ctx->r->headers_in.server.len);
        if (origin.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        origin.len = ngx_sprintf(origin.data, "%s://%V",
#if (NGX_HTTP_SSL)
                                 ctx->r->connection->ssl ? "https" : "http",
#else
                                 "http",
#endif
                                 &ctx->r->headers_in.server)
                     - origin.data;
        ngx_pt_json_str(g, &origin);

    } else {
        ngx_pt_json_null(g);
    }

    ngx_pt_json_key(g, "content_path_prefix");
    ngx_pt_json_cstr(g, "/v2/");
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "domain_enabled");
    ngx_pt_json_bool(g, 0);

    /* ours: the store's figures, as the metrics give them */

    ngx_pt_json_key(g, "cache");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "used");
    ngx_pt_json_int(g, t.bytes);
    ngx_pt_json_key(g, "max_size");
    ngx_pt_json_int(g, pmcf->max_size ? pmcf->max_size : NGX_PT_NULL_INT);
    ngx_pt_json_key(g, "min_free");
    ngx_pt_json_int(g, pmcf->min_free ? pmcf->min_free : NGX_PT_NULL_INT);
    ngx_pt_json_key(g, "inactive");
    ngx_pt_json_int(g, pmcf->inactive ? (int64_t) pmcf->inactive / 1000
                                      : NGX_PT_NULL_INT);
    ngx_pt_json_key(g, "files");
    ngx_pt_json_int(g, t.files);
    ngx_pt_json_key(g, "pinned");
    ngx_pt_json_int(g, ngx_pt_shm_stat_get(NGX_PT_STAT_PINNED_BYTES));
    ngx_pt_json_key(g, "pinned_files");
    ngx_pt_json_int(g, ngx_pt_shm_stat_get(NGX_PT_STAT_PINNED_FILES));
    ngx_pt_json_key(g, "evictions");
    ngx_pt_json_int(g, ngx_pt_shm_stat_get(NGX_PT_STAT_EVICTIONS));
    ngx_pt_json_key(g, "evicted_bytes");
    ngx_pt_json_int(g, ngx_pt_shm_stat_get(NGX_PT_STAT_EVICTED_BYTES));
    ngx_pt_json_key(g, "fills_in_progress");
    ngx_pt_json_int(g, ngx_pt_shm_stat_get(NGX_PT_STAT_FILLS));
    ngx_pt_json_map_close(g);

    ngx_pt_json_map_close(g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


static void
ngx_pt_admin_status_version(yajl_gen g, const char *component,
    const char *version, const char *package, const char *module)
{
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "component");
    ngx_pt_json_cstr(g, component);
    ngx_pt_json_key(g, "version");
    ngx_pt_json_cstr(g, version);
    ngx_pt_json_key(g, "package");
    ngx_pt_json_cstr(g, package);
    ngx_pt_json_key(g, "module");
    ngx_pt_json_cstr(g, module);
    ngx_pt_json_key(g, "domain_compatible");
    ngx_pt_json_bool(g, 0);
    ngx_pt_json_map_close(g);
}


/* the worker answering: tasks, API and content are all nginx's */

static void
ngx_pt_admin_status_apps(ngx_pt_admin_t *ctx, const char *key,
    ngx_str_t *now)
{
    u_char     buf[NGX_INT64_LEN + 1 + NGX_MAXHOSTNAMELEN];
    yajl_gen   g;
    ngx_str_t  name;

    g = ctx->g;

    name.data = buf;
    name.len = ngx_snprintf(buf, sizeof(buf), "%P@%V", ngx_pid,
                            &ngx_cycle->hostname)
               - buf;

    ngx_pt_json_key(g, key);
    ngx_pt_json_array_open(g);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "name");
    ngx_pt_json_str(g, &name);
    ngx_pt_json_key(g, "last_heartbeat");
    ngx_pt_json_str(g, now);

    if (key[7] == 'w') {
        /* online_workers */
        ngx_pt_json_key(g, "current_task");
        ngx_pt_json_null(g);
    }

    ngx_pt_json_map_close(g);
    ngx_pt_json_array_close(g);
}


/*
 * POST orphans/cleanup/ {"orphan_protection_time": minutes}: a waiting
 * task, and the cache manager asked to remove the files no repository has
 * and that nothing read or stored for that long.
 */

ngx_int_t
ngx_pt_admin_orphans(ngx_pt_admin_t *ctx)
{
    size_t           i;
    int64_t          minutes;
    MDB_txn         *txn;
    yajl_val         body, v;
    ngx_str_t        err, href, id;
    ngx_pt_errors_t  errs;

    minutes = NGX_PT_ORPHAN_PROTECTION;

    if (ngx_pt_errors_init(ctx->pool, &errs) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = NULL;

    if (ctx->body.len) {
        body = ngx_pt_json_parse_input(ctx->pool, &ctx->body, &err);

        if (body == NULL) {
            if (err.len == 0) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_pt_admin_detail(ctx, NGX_HTTP_BAD_REQUEST,
                                       "JSON parse error - %V", &err);
        }

        if (!YAJL_IS_OBJECT(body)) {
            return ngx_pt_admin_detail(ctx, NGX_HTTP_BAD_REQUEST,
                                       "Invalid data. Expected a "
                                       "dictionary.");
        }
    }

    for (i = 0; body && i < body->u.object.len; i++) {
        v = body->u.object.values[i];

        if (ngx_strcmp(body->u.object.keys[i], "orphan_protection_time")
            == 0)
        {
            if (YAJL_IS_NULL(v)) {
                continue;
            }

            if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0
                || YAJL_GET_INTEGER(v) > 52560000)
            {
                if (ngx_pt_error_addc(&errs, "orphan_protection_time",
                                      "A valid integer from 0 to 52560000 "
                                      "is required.")
                    != NGX_OK)
                {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                continue;
            }

            minutes = YAJL_GET_INTEGER(v);
            continue;
        }

        if (ngx_strcmp(body->u.object.keys[i], "content_hrefs") == 0
            && (YAJL_IS_NULL(v)
                || (YAJL_IS_ARRAY(v) && v->u.array.len == 0)))
        {
            continue;
        }

        if (ngx_pt_error_addc(&errs, body->u.object.keys[i],
                              ngx_strcmp(body->u.object.keys[i],
                                         "content_hrefs") == 0
                              ? "Not supported: orphans are cleaned up "
                                "as a whole."
                              : "Unexpected field")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (errs.items.nelts) {
        ngx_pt_errors_render(ctx->g, &errs);
        ctx->status = NGX_HTTP_BAD_REQUEST;
        return NGX_OK;
    }

    if (ngx_pt_txn_begin(ctx->log, 1, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    if (ngx_pt_admin_task(ctx, txn, NGX_PT_TASK_ORPHANS, "waiting", NULL,
                          &href, &id)
        != NGX_OK)
    {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_store_error(ctx);
    }

    /* asked first: a task the manager cannot find is only skipped */

    if (ngx_pt_shm_gc_ask(&id, (uint64_t) minutes * 60 * 1000) != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_detail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "Too many orphan cleanups are waiting.");
    }

    if (ngx_pt_txn_commit(ctx->log, txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "task");
    ngx_pt_json_str(ctx->g, &href);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_ACCEPTED;

    return NGX_OK;
}
