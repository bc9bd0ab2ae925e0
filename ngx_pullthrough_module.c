
/*
 * ngx_pullthrough: an nginx module that makes nginx a pull-through caching
 * container registry. This file holds the module object, its directives,
 * configuration and process hooks; the work is done in src/.
 */


#include <ngx_pt.h>
#include <ngx_pt_auth.h>
#include <ngx_pt_blob.h>
#include <ngx_pt_curl.h>
#include <ngx_pt_evict.h>
#include <ngx_pt_metrics.h>
#include <ngx_pt_fetch.h>
#include <ngx_pt_fill.h>
#include <ngx_pt_registry.h>
#include <ngx_pt_shm.h>
#include <ngx_pt_subrequest.h>
#include <ngx_pt_admin.h>
#include <ngx_pt_schema.h>


static ngx_int_t ngx_http_pullthrough_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pullthrough_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_pullthrough_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pullthrough_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_pullthrough_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pullthrough_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_pullthrough_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pullthrough_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pullthrough_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pullthrough_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pullthrough_max_stale(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_pullthrough_init_process(ngx_cycle_t *cycle);
static void ngx_http_pullthrough_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_pullthrough_revalidate_modes[] = {
    { ngx_string("wait"), NGX_PT_REVALIDATE_WAIT },
    { ngx_string("updating"), NGX_PT_REVALIDATE_UPDATING },
    { ngx_string("background"), NGX_PT_REVALIDATE_BACKGROUND },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_pullthrough_commands[] = {

    { ngx_string("pullthrough_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_pullthrough_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pullthrough_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_main_conf_t, config),
      NULL },

    { ngx_string("pullthrough_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_pt_shm_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_main_conf_t, zone_size),
      NULL },

    { ngx_string("pullthrough_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pullthrough_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pullthrough_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pullthrough_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pullthrough_admin_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, admin_max_body),
      NULL },

    { ngx_string("pullthrough_registry"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_pullthrough_registry,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pullthrough_manifest_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, manifest_max_size),
      NULL },

    { ngx_string("pullthrough_fill_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, fill_buffer_size),
      NULL },

    { ngx_string("pullthrough_tag_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, tag_ttl),
      NULL },

    { ngx_string("pullthrough_tag_revalidate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, tag_revalidate),
      &ngx_http_pullthrough_revalidate_modes },

    { ngx_string("pullthrough_tag_revalidate_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, revalidate_timeout),
      NULL },

    { ngx_string("pullthrough_tag_max_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_pullthrough_max_stale,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, tag_max_stale),
      NULL },

    { ngx_string("pullthrough_negative_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pullthrough_loc_conf_t, negative_ttl),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pullthrough_module_ctx = {
    ngx_http_pullthrough_preconfiguration, /* preconfiguration */
    ngx_http_pullthrough_postconfiguration, /* postconfiguration */

    ngx_http_pullthrough_create_main_conf, /* create main configuration */
    ngx_http_pullthrough_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_pullthrough_create_loc_conf,  /* create location configuration */
    ngx_http_pullthrough_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_pullthrough_module = {
    NGX_MODULE_V1,
    &ngx_http_pullthrough_module_ctx,      /* module context */
    ngx_http_pullthrough_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_pullthrough_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_pullthrough_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_pullthrough_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_pt_subrequest_add_variables(cf) != NGX_OK
        || ngx_pt_fetch_add_variables(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pt_registry_add_variables(cf);
}


/*
 * The store is made and its schema checked, and the declarative
 * configuration applied to it, while the configuration is read: a bad
 * store or file fails "nginx -t" and a reload leaves the running
 * configuration in place, where a failing init_module would stop nginx.
 */

static ngx_int_t
ngx_http_pullthrough_postconfiguration(ngx_conf_t *cf)
{
    ngx_int_t                           rc;
    ngx_http_handler_pt                *h;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_pullthrough_main_conf_t   *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_pullthrough_module);

    if (pmcf->config.len && pmcf->path.data == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"pullthrough_config\" needs \"pullthrough_store\"");
        return NGX_ERROR;
    }

    if (pmcf->path.data) {
        if (pmcf->map_size == NGX_CONF_UNSET_SIZE) {
            pmcf->map_size = NGX_PT_DEFAULT_MAP_SIZE;
        }

        if (ngx_pt_schema_prepare(cf->cycle, pmcf) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = pmcf->config.len ? ngx_pt_declare_apply(cf, pmcf) : NGX_OK;

        ngx_pt_schema_release(cf->cycle, pmcf);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        /*
         * On a fresh start, the temp files of processes that are gone:
         * only those, as another nginx (a binary upgrade, a second start
         * by mistake) may be filling now.
         */

        if (ngx_is_init_cycle(cf->cycle->old_cycle) && !ngx_test_config
            && ngx_process != NGX_PROCESS_SIGNALLER)
        {
            ngx_pt_blob_clean_temp(cf->cycle, &pmcf->path);
        }

        /* what the workers share: tokens, fills, limits */

        if (pmcf->zone_size == NGX_CONF_UNSET_SIZE) {
            pmcf->zone_size = NGX_PT_SHM_DEFAULT_SIZE;
        }

        if (ngx_pt_shm_add(cf, pmcf->zone_size) != NGX_OK) {
            return NGX_ERROR;
        }

        /* eviction and garbage collection, in the cache manager */

        ngx_pt_evict_init_conf(pmcf);

        if (ngx_pt_evict_add_path(cf, pmcf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* registry requests counted for the metrics, once they have ended */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_pt_registry_log_handler;

    return ngx_pt_subrequest_init_filters(cf);
}


static void *
ngx_http_pullthrough_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_pullthrough_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pullthrough_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->path = { 0, NULL };
     */

    pmcf->map_size = NGX_CONF_UNSET_SIZE;
    pmcf->zone_size = NGX_CONF_UNSET_SIZE;
    pmcf->max_size = NGX_CONF_UNSET;
    pmcf->min_free = NGX_CONF_UNSET;
    pmcf->inactive = NGX_CONF_UNSET_MSEC;
    pmcf->manager_files = NGX_CONF_UNSET_UINT;
    pmcf->manager_sleep = NGX_CONF_UNSET_MSEC;
    pmcf->manager_threshold = NGX_CONF_UNSET_MSEC;

    return pmcf;
}


static char *
ngx_http_pullthrough_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_pullthrough_main_conf_t *pmcf = conf;

    ngx_conf_init_size_value(pmcf->map_size, NGX_PT_DEFAULT_MAP_SIZE);

    /* relative to the configuration's directory, as include's */

    if (pmcf->config.len
        && ngx_conf_full_name(cf->cycle, &pmcf->config, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_pullthrough_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pullthrough_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->admin = NGX_CONF_UNSET;
    plcf->registry = NGX_CONF_UNSET;
    plcf->admin_max_body = NGX_CONF_UNSET_SIZE;
    plcf->manifest_max_size = NGX_CONF_UNSET_SIZE;
    plcf->fill_buffer_size = NGX_CONF_UNSET_SIZE;
    plcf->tag_ttl = NGX_CONF_UNSET_MSEC;
    plcf->tag_revalidate = NGX_CONF_UNSET_UINT;
    plcf->revalidate_timeout = NGX_CONF_UNSET_MSEC;
    plcf->tag_max_stale = NGX_CONF_UNSET_MSEC;
    plcf->negative_ttl = NGX_CONF_UNSET_MSEC;

    /*
     * set by ngx_pcalloc():
     *
     *     plcf->fetch_uri = { 0, NULL };
     *     plcf->thread_pool = NULL;
     */

    return plcf;
}


static char *
ngx_http_pullthrough_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_pullthrough_loc_conf_t *prev = parent;
    ngx_http_pullthrough_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_pullthrough_main_conf_t  *pmcf;

    ngx_conf_merge_value(conf->admin, 0, 0);
    ngx_conf_merge_value(conf->registry, 0, 0);
    ngx_conf_merge_size_value(conf->admin_max_body, prev->admin_max_body,
                              NGX_PT_DEFAULT_ADMIN_MAX_BODY);
    ngx_conf_merge_size_value(conf->manifest_max_size,
                              prev->manifest_max_size,
                              NGX_PT_DEFAULT_MANIFEST_MAX_SIZE);
    ngx_conf_merge_size_value(conf->fill_buffer_size,
                              prev->fill_buffer_size,
                              NGX_PT_DEFAULT_FILL_BUFFER_SIZE);

    ngx_conf_merge_msec_value(conf->tag_ttl, prev->tag_ttl,
                              NGX_PT_DEFAULT_TAG_TTL);
    ngx_conf_merge_uint_value(conf->tag_revalidate, prev->tag_revalidate,
                              NGX_PT_REVALIDATE_UPDATING);
    ngx_conf_merge_msec_value(conf->revalidate_timeout,
                              prev->revalidate_timeout,
                              NGX_PT_DEFAULT_REVALIDATE_TIMEOUT);
    ngx_conf_merge_msec_value(conf->tag_max_stale, prev->tag_max_stale,
                              NGX_PT_UNLIMITED);
    ngx_conf_merge_msec_value(conf->negative_ttl, prev->negative_ttl,
                              NGX_PT_DEFAULT_NEGATIVE_TTL);

    if (conf->revalidate_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pullthrough_tag_revalidate_timeout\" must be "
                           "more than 0");
        return NGX_CONF_ERROR;
    }

    if (conf->manifest_max_size < NGX_PT_MIN_MANIFEST_MAX_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pullthrough_manifest_max_size\" must be at "
                           "least 1k");
        return NGX_CONF_ERROR;
    }

    if (conf->fill_buffer_size < NGX_PT_MIN_FILL_BUFFER_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pullthrough_fill_buffer_size\" must be at "
                           "least 4k");
        return NGX_CONF_ERROR;
    }

    if (!conf->admin && !conf->registry) {
        return NGX_CONF_OK;
    }

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_pullthrough_module);

    if (pmcf->path.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pullthrough_store\" must be set in the http "
                           "block when \"pullthrough_admin\" or "
                           "\"pullthrough_registry\" is used");
        return NGX_CONF_ERROR;
    }

    if (conf->admin) {
        /*
         * The admin handler enforces its own limit and answers in JSON;
         * the core check would answer oversized bodies in HTML first.
         */
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->client_max_body_size = 0;

        if (ngx_pt_admin_hosts(cf, conf) != NGX_OK
            || ngx_pt_admin_openapi_init(cf) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pullthrough_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pullthrough_main_conf_t *pmcf = conf;

    ssize_t      size;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    if (pmcf->path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pmcf->path = value[1];

    if (pmcf->path.len > 1 && pmcf->path.data[pmcf->path.len - 1] == '/') {
        pmcf->path.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &pmcf->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "map_size=", 9) != 0) {

            switch (ngx_pt_evict_param(cf, pmcf, &value[i])) {
            case NGX_OK:
                continue;
            case NGX_ERROR:
                return NGX_CONF_ERROR;
            }

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        s.data = value[i].data + 9;
        s.len = value[i].len - 9;

        size = ngx_parse_size(&s);

        /* LMDB wants whole pages; anything under 1m is a typo */
        if (size == NGX_ERROR || size < NGX_PT_MIN_MAP_SIZE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid map_size \"%V\", "
                               "it must be at least 1m", &s);
            return NGX_CONF_ERROR;
        }

        pmcf->map_size = (size_t) size;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pullthrough_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pullthrough_loc_conf_t *plcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->admin != NGX_CONF_UNSET || plcf->registry != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    plcf->admin = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_pt_metrics_handler) {
        return "cannot be in the location of \"pullthrough_metrics\"";
    }

    clcf->handler = ngx_http_pullthrough_admin_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_pullthrough_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

    clcf->handler = ngx_pt_metrics_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_pullthrough_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pullthrough_loc_conf_t *plcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->admin != NGX_CONF_UNSET || plcf->registry != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_pt_metrics_handler) {
        return "cannot be in the location of \"pullthrough_metrics\"";
    }

    if (clcf->named || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/')
    {
        return "must be in a prefix location ending with \"/\", "
               "such as \"location /v2/\"";
    }

    /* default=<base_path>: the distribution of names without one */

    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        if (ngx_strncmp(value[1].data, "default=", 8) != 0
            || value[1].len == 8)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": expected "
                               "\"default=<base_path>\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        plcf->default_path.data = value[1].data + 8;
        plcf->default_path.len = value[1].len - 8;

        if (plcf->default_path.data[0] == '/'
            || plcf->default_path.data[plcf->default_path.len - 1] == '/')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": a base_path has "
                               "no leading or trailing \"/\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    plcf->registry = 1;
    clcf->handler = ngx_http_pullthrough_registry_handler;

    /* large disk work of fills runs in the "default" thread pool */

    plcf->thread_pool = ngx_thread_pool_add(cf, NULL);
    if (plcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the internal location for upstream exchanges, nested in this one */

    return ngx_pt_subrequest_location(cf, &clcf->name, &plcf->fetch_uri,
                                      &plcf->fetch_uri_insecure);
}


static ngx_http_pullthrough_main_conf_t *
ngx_http_pullthrough_get_main_conf(ngx_cycle_t *cycle)
{
    ngx_http_pullthrough_main_conf_t  *pmcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NULL;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_pullthrough_module);

    if (pmcf == NULL || pmcf->path.data == NULL) {
        return NULL;
    }

    return pmcf;
}


/* LMDB environments must not cross fork(): each worker opens its own */

/* pullthrough_tag_max_stale time | off; */

static char *
ngx_http_pullthrough_max_stale(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t   *value;
    ngx_msec_t  *mp;

    mp = (ngx_msec_t *) ((char *) conf + cmd->offset);

    if (*mp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *mp = NGX_PT_UNLIMITED;
        return NGX_CONF_OK;
    }

    return ngx_conf_set_msec_slot(cf, cmd, conf);
}


static ngx_int_t
ngx_http_pullthrough_init_process(ngx_cycle_t *cycle)
{
    ngx_http_pullthrough_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = ngx_http_pullthrough_get_main_conf(cycle);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    /*
     * A worker without its store still answers, with 503 errors: exiting
     * would leave the master without workers, and nobody to say why.
     */

    (void) ngx_pt_schema_open(cycle, pmcf);

    if (ngx_pt_curl_init_process(cycle) != NGX_OK
        || ngx_pt_auth_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_pt_shm_init_process(cycle);
    ngx_pt_blob_init(cycle, &pmcf->path);
    ngx_pt_fill_init_process(&ngx_pt_registry_fill_ops);

    return NGX_OK;
}


static void
ngx_http_pullthrough_exit_process(ngx_cycle_t *cycle)
{
    ngx_pt_curl_exit_process(cycle);
    ngx_pt_store_close();
}
