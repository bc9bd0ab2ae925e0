
/*
 * ngx_pullthrough: what every part includes: nginx, the module's
 * configuration, constants and small helpers (ngx_pt_util.c). Each part
 * has its own header for the rest; the layers, from the top:
 *
 *   registry (/v2/) -> fills -> exchanges -> transports
 *   admin API       -> content -> schema -> store (LMDB)
 *
 * and shared memory (ngx_pt_shm.h) beside them, used by fills, exchanges
 * and authentication.
 */


#ifndef _NGX_PT_H_INCLUDED_
#define _NGX_PT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * the module's version: the one place it is written; the metrics report it
 * (pullthrough_build_info) and "make deb" checks that the package's
 * changelog agrees
 */
#define NGX_PT_VERSION                     "0.1.0"


/* defaults and minimums of the directives */
#define NGX_PT_DEFAULT_MAP_SIZE            (1024 * 1024 * 1024)
#define NGX_PT_MIN_MAP_SIZE                (1024 * 1024)
#define NGX_PT_DEFAULT_ADMIN_MAX_BODY      (1024 * 1024)
#define NGX_PT_DEFAULT_MANIFEST_MAX_SIZE   (4 * 1024 * 1024)
#define NGX_PT_MIN_MANIFEST_MAX_SIZE       1024
#define NGX_PT_DEFAULT_FILL_BUFFER_SIZE    (256 * 1024)
#define NGX_PT_MIN_FILL_BUFFER_SIZE        4096

/* freshness of tags and absences */
#define NGX_PT_DEFAULT_TAG_TTL             60000   /* ms */
#define NGX_PT_DEFAULT_REVALIDATE_TIMEOUT  10000   /* ms */
#define NGX_PT_DEFAULT_NEGATIVE_TTL        5000    /* ms */
#define NGX_PT_UNLIMITED                   ((ngx_msec_t) -2)

#define NGX_PT_REVALIDATE_WAIT             1
#define NGX_PT_REVALIDATE_UPDATING         2
#define NGX_PT_REVALIDATE_BACKGROUND       3

/* retries (ngx_pt_backoff) */
#define NGX_PT_BACKOFF_FIRST               250     /* ms, doubled per try */
#define NGX_PT_BACKOFF_MAX                 4000    /* ms */
#define NGX_PT_RETRY_AFTER_MAX             10      /* s: longer, no retry */

/* the longest names, descriptions and secrets the admin API takes */
#define NGX_PT_NAME_MAX                    255
#define NGX_PT_VALUE_MAX                   4096
#define NGX_PT_TEXT_MAX                    65536

#define NGX_PT_API_ROOT           "/pulp/api/v3/"
#define NGX_PT_USER_AGENT         "ngx_pullthrough"

/* "null" for optional integer and number fields */
#define NGX_PT_NULL_INT           INT64_MIN
#define ngx_pt_null_num(n)        ((n) != (n))

#define NGX_PT_UUID_LEN           36
#define NGX_PT_TIME_LEN           (sizeof("2026-01-01T00:00:00.000000Z") - 1)


/* configuration */

typedef struct {
    ngx_str_t                   path;        /* store root */
    size_t                      map_size;    /* LMDB map size */
    size_t                      zone_size;   /* the shared zone */
    off_t                       max_size;    /* of the files, 0: none */
    off_t                       min_free;    /* on the file system, 0: none */
    ngx_msec_t                  inactive;    /* unread that long, 0: never */
    ngx_uint_t                  manager_files;
    ngx_msec_t                  manager_sleep;
    ngx_msec_t                  manager_threshold;
    ngx_str_t                   config;      /* pullthrough_config file */
} ngx_http_pullthrough_main_conf_t;


typedef struct {
    ngx_flag_t                  admin;
    ngx_flag_t                  registry;
    size_t                      admin_max_body;
    size_t                      manifest_max_size;
    size_t                      fill_buffer_size;
    ngx_msec_t                  tag_ttl;
    ngx_uint_t                  tag_revalidate;   /* NGX_PT_REVALIDATE_* */
    ngx_msec_t                  revalidate_timeout;
    ngx_msec_t                  tag_max_stale;    /* NGX_PT_UNLIMITED: off */
    ngx_msec_t                  negative_ttl;     /* 0: off */
    ngx_array_t                *admin_hosts; /* server names, for the
                                                admin API's Host check */
    ngx_str_t                   default_path; /* pullthrough_registry
                                                 default=: a base_path */
    ngx_str_t                   fetch_uri;   /* the internal location */
    ngx_str_t                   fetch_uri_insecure;
    ngx_thread_pool_t          *thread_pool;
} ngx_http_pullthrough_loc_conf_t;


extern ngx_module_t  ngx_http_pullthrough_module;


/* helpers (ngx_pt_util.c) */

ngx_int_t ngx_pt_uuid(ngx_pool_t *pool, ngx_str_t *out);
ngx_int_t ngx_pt_strdup(ngx_pool_t *pool, const char *s, ngx_str_t *out);

#define NGX_PT_NO_RETRY_AFTER  -2
ngx_msec_t ngx_pt_backoff(ngx_uint_t tries, ngx_int_t retry_after);
u_char *ngx_pt_uuid_format(u_char *dst, u_char *b);
ngx_int_t ngx_pt_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body);
ngx_uint_t ngx_pt_error_status(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_pt_now(ngx_pool_t *pool, ngx_str_t *out);
uint64_t ngx_pt_clock(void);
ngx_int_t ngx_pt_path_prefix(ngx_str_t *prefix, ngx_str_t *path);
ngx_int_t ngx_pt_oci_component_valid(u_char *p, size_t len);
u_char *ngx_pt_strfind(u_char *s1, u_char *last, u_char *s2, size_t n,
    ngx_uint_t caseless);
ngx_int_t ngx_pt_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars);


#endif /* _NGX_PT_H_INCLUDED_ */
