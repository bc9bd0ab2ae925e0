
/*
 * ngx_pullthrough: shared types and prototypes of the module's parts.
 */


#ifndef _NGX_PT_H_INCLUDED_
#define _NGX_PT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <lmdb.h>
#include <openssl/evp.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>


#define NGX_PT_SCHEMA_VERSION     1
#define NGX_PT_DEFAULT_MAP_SIZE   (1024 * 1024 * 1024)

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
} ngx_http_pullthrough_main_conf_t;


typedef struct {
    ngx_flag_t                  admin;
    ngx_flag_t                  registry;
    size_t                      admin_max_body;
    size_t                      manifest_max_size;
    size_t                      fill_buffer_size;
    ngx_str_t                   fetch_uri;   /* the internal location */
    ngx_str_t                   fetch_uri_insecure;
    ngx_thread_pool_t          *thread_pool;
} ngx_http_pullthrough_loc_conf_t;


extern ngx_module_t  ngx_http_pullthrough_module;


/* metadata store (ngx_pt_store.c) */

typedef enum {
    NGX_PT_DB_META = 0,
    NGX_PT_DB_REMOTES,
    NGX_PT_DB_REMOTE_NAMES,
    NGX_PT_DB_PT_DISTS,
    NGX_PT_DB_DISTS,
    NGX_PT_DB_DIST_NAMES,
    NGX_PT_DB_DIST_PATHS,
    NGX_PT_DB_REPOS,
    NGX_PT_DB_REPO_NAMES,
    NGX_PT_DB_VERSIONS,
    NGX_PT_DB_TAGS,
    NGX_PT_DB_MANIFESTS,
    NGX_PT_DB_BLOBS,
    NGX_PT_DB_TASKS,
    NGX_PT_DB_COUNT
} ngx_pt_db_e;


ngx_int_t ngx_pt_store_prepare(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf);
ngx_int_t ngx_pt_store_open(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf);
void ngx_pt_store_close(void);
ngx_int_t ngx_pt_store_ready(void);
MDB_dbi ngx_pt_store_dbi(ngx_uint_t db);

ngx_int_t ngx_pt_txn_begin(ngx_log_t *log, ngx_uint_t write, MDB_txn **txn);
ngx_int_t ngx_pt_txn_commit(ngx_log_t *log, MDB_txn *txn);
void ngx_pt_txn_abort(MDB_txn *txn);

/* NGX_OK, NGX_DECLINED when absent, NGX_ERROR */
ngx_int_t ngx_pt_db_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, ngx_str_t *val);
ngx_int_t ngx_pt_db_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, ngx_str_t *val);
ngx_int_t ngx_pt_db_del(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key);

/* calls handler for every record of db in key order until it returns
 * something other than NGX_OK */
typedef ngx_int_t (*ngx_pt_db_iter_pt)(void *data, ngx_str_t *key,
    ngx_str_t *val);
ngx_int_t ngx_pt_db_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_pt_db_iter_pt handler, void *data);
ngx_int_t ngx_pt_db_each_prefix(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix, ngx_pt_db_iter_pt handler, void *data);


/* JSON (ngx_pt_json.c) */

yajl_gen ngx_pt_json_gen(ngx_pool_t *pool);
ngx_int_t ngx_pt_json_result(yajl_gen g, ngx_pool_t *pool, ngx_str_t *out);
yajl_val ngx_pt_json_parse(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *err);
yajl_val ngx_pt_json_get(yajl_val obj, const char *key);
ngx_int_t ngx_pt_json_has_nul(const char *s);

void ngx_pt_json_key(yajl_gen g, const char *key);
void ngx_pt_json_cstr(yajl_gen g, const char *s);
void ngx_pt_json_str(yajl_gen g, ngx_str_t *s);  /* NULL data: null */
void ngx_pt_json_int(yajl_gen g, int64_t n);      /* NGX_PT_NULL_INT: null */
void ngx_pt_json_num(yajl_gen g, double n);       /* NaN: null */
void ngx_pt_json_bool(yajl_gen g, ngx_uint_t b);
void ngx_pt_json_null(yajl_gen g);
void ngx_pt_json_map_open(yajl_gen g);
void ngx_pt_json_map_close(yajl_gen g);
void ngx_pt_json_array_open(yajl_gen g);
void ngx_pt_json_array_close(yajl_gen g);


/* records and their schema (ngx_pt_schema.c) */

typedef struct {
    ngx_str_t                   id;          /* UUID */
    ngx_str_t                   created;     /* ISO 8601, UTC */
    ngx_str_t                   updated;
} ngx_pt_meta_t;


typedef struct {
    ngx_pt_meta_t               meta;
    ngx_str_t                   name;
    ngx_str_t                   url;
    ngx_str_t                   policy;
    ngx_str_t                   ca_cert;
    ngx_str_t                   client_cert;
    ngx_str_t                   client_key;
    ngx_flag_t                  tls_validation;
    ngx_str_t                   proxy_url;
    ngx_str_t                   proxy_username;
    ngx_str_t                   proxy_password;
    ngx_str_t                   username;
    ngx_str_t                   password;
    int64_t                     download_concurrency;
    int64_t                     max_retries;
    int64_t                     rate_limit;
    double                      total_timeout;
    double                      connect_timeout;
    double                      sock_connect_timeout;
    double                      sock_read_timeout;
    ngx_array_t                *headers;     /* ngx_keyval_t */
    ngx_array_t                *includes;    /* ngx_str_t */
    ngx_array_t                *excludes;    /* ngx_str_t */
    ngx_array_t                *labels;      /* ngx_keyval_t */
} ngx_pt_remote_t;


/* both kinds of distribution: pull-through ones, made through the admin
 * API, and the per-image ones that pulls create under them */
typedef struct {
    ngx_pt_meta_t               meta;
    ngx_str_t                   name;
    ngx_str_t                   base_path;
    ngx_str_t                   remote;      /* remote id */
    ngx_str_t                   repository;  /* repository id (per-image) */
    ngx_str_t                   parent;      /* pull-through dist id */
    ngx_str_t                   description;
    ngx_str_t                   content_guard;
    ngx_flag_t                  private;
    ngx_flag_t                  hidden;
    ngx_array_t                *labels;      /* ngx_keyval_t */
} ngx_pt_dist_t;


/* the repository a pull-through distribution's pulls make per image */
typedef struct {
    ngx_pt_meta_t               meta;
    ngx_str_t                   name;
    ngx_str_t                   description;
    int64_t                     retain_repo_versions;
    int64_t                     latest_version;
    ngx_str_t                   remote;      /* remote id */
    ngx_str_t                   parent;      /* pull-through dist id */
    ngx_array_t                *labels;
} ngx_pt_repo_t;


typedef struct {
    ngx_pt_meta_t               meta;
    ngx_str_t                   name;
    ngx_str_t                   state;       /* "completed", "failed" */
    ngx_str_t                   error;       /* description when failed */
    ngx_array_t                *created;     /* ngx_str_t hrefs */
} ngx_pt_task_t;


typedef struct ngx_pt_field_s  ngx_pt_field_t;

typedef ngx_int_t (*ngx_pt_check_pt)(ngx_pool_t *pool, void *value,
    ngx_str_t *err);

enum {
    NGX_PT_T_STR = 0,
    NGX_PT_T_BOOL,
    NGX_PT_T_INT,
    NGX_PT_T_NUM,
    NGX_PT_T_STRLIST,
    NGX_PT_T_LABELS,
    NGX_PT_T_HEADERS,
    NGX_PT_T_REF          /* id stored, href shown */
};

#define NGX_PT_F_REQUIRED   0x0001
#define NGX_PT_F_NULLABLE   0x0002
#define NGX_PT_F_SECRET     0x0004   /* write-only: in hidden_fields */
#define NGX_PT_F_READONLY   0x0008   /* accepted and ignored on input */
#define NGX_PT_F_BLANK      0x0010   /* "" is a valid value */
#define NGX_PT_F_INTERNAL   0x0020   /* stored, never shown nor taken */
#define NGX_PT_F_TRIM       0x0040   /* leading, trailing spaces dropped */

struct ngx_pt_field_s {
    const char                 *name;
    ngx_uint_t                  type;
    ngx_uint_t                  flags;
    size_t                      offset;
    ngx_pt_check_pt             check;
    int64_t                     min;         /* numbers */
    int64_t                     max;         /* numbers; string length */
    const char                 *ref;         /* NGX_PT_T_REF: href path */
};


typedef struct {
    const char                 *name;        /* for logs and tasks */
    ngx_uint_t                  db;
    const char                 *path;        /* under NGX_PT_API_ROOT */
    const char                 *prn;
    ngx_pt_field_t             *fields;
    size_t                      size;
    void                      (*init)(void *rec);   /* defaults */
} ngx_pt_type_t;


extern ngx_pt_type_t  ngx_pt_remote_type;
extern ngx_pt_type_t  ngx_pt_pt_dist_type;
extern ngx_pt_type_t  ngx_pt_dist_type;
extern ngx_pt_type_t  ngx_pt_task_type;
extern ngx_pt_type_t  ngx_pt_repo_type;


/* field errors, rendered as {"field": ["message"]} */
typedef struct {
    ngx_str_t                   field;
    ngx_str_t                   message;
} ngx_pt_field_error_t;

typedef struct {
    ngx_array_t                 items;       /* ngx_pt_field_error_t */
} ngx_pt_errors_t;


#define NGX_PT_INPUT_CREATE    0   /* defaults applied, required checked */
#define NGX_PT_INPUT_REPLACE   1   /* PUT: required checked */
#define NGX_PT_INPUT_PARTIAL   2   /* PATCH */

ngx_int_t ngx_pt_errors_init(ngx_pool_t *pool, ngx_pt_errors_t *errs);
ngx_int_t ngx_pt_error_add(ngx_pt_errors_t *errs, const char *field,
    ngx_str_t *message);
ngx_int_t ngx_pt_error_addc(ngx_pt_errors_t *errs, const char *field,
    const char *message);
void ngx_pt_errors_render(yajl_gen g, ngx_pt_errors_t *errs);

void *ngx_pt_record_new(ngx_pool_t *pool, ngx_pt_type_t *type);
void *ngx_pt_record_copy(ngx_pool_t *pool, ngx_pt_type_t *type, void *rec);
ngx_int_t ngx_pt_record_input(ngx_pool_t *pool, ngx_pt_type_t *type,
    yajl_val obj, void *rec, ngx_uint_t mode, ngx_pt_errors_t *errs);
void ngx_pt_record_render(yajl_gen g, ngx_pt_type_t *type, void *rec);
void ngx_pt_record_href(ngx_pt_type_t *type, ngx_str_t *id, u_char *buf,
    ngx_str_t *out);
ngx_int_t ngx_pt_record_load(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **rec);
ngx_int_t ngx_pt_record_load_cached(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_type_t *type, ngx_str_t *id, void **rec);
ngx_int_t ngx_pt_record_decode(ngx_pool_t *pool, ngx_pt_type_t *type,
    ngx_str_t *val, void **rec);
ngx_int_t ngx_pt_record_save(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, void *rec);
ngx_int_t ngx_pt_record_delete(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id);
ngx_int_t ngx_pt_remote_validate(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_pt_errors_t *errs);
ngx_int_t ngx_pt_base_path_valid(ngx_str_t *path, ngx_str_t *err);
ngx_int_t ngx_pt_id_valid(ngx_str_t *id);


/* content records: repositories, versions, tags, manifests, blobs
 * (ngx_pt_content.c) */

typedef struct {
    ngx_str_t                   repo;        /* <base_path>/<name> */
    ngx_pt_dist_t              *dist;        /* the pull-through one */
    ngx_str_t                   config;      /* config blob digest */
    ngx_str_t                   tag;         /* empty: pulled by digest */
    ngx_str_t                   digest;
    ngx_str_t                   media_type;
    off_t                       size;
    ngx_array_t                 blobs;       /* ngx_str_t digests */
    ngx_array_t                 manifests;   /* ngx_str_t digests */
} ngx_pt_manifest_info_t;

ngx_int_t ngx_pt_content_tag(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *tag, ngx_str_t *digest);
ngx_int_t ngx_pt_content_manifest(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest, ngx_str_t *media_type, off_t *size);
ngx_int_t ngx_pt_content_blob_has(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest);
ngx_int_t ngx_pt_content_blob_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest, off_t size);
ngx_int_t ngx_pt_content_manifest_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi);
ngx_int_t ngx_pt_content_parse_manifest(ngx_pool_t *pool,
    ngx_pt_manifest_info_t *mi, u_char *data, size_t len);
ngx_int_t ngx_pt_content_list(ngx_pool_t *pool, ngx_log_t *log,
    ngx_uint_t db, ngx_str_t *prefix, ngx_str_t *last, ngx_uint_t n,
    ngx_array_t *out, ngx_uint_t *more);
ngx_array_t *ngx_pt_content_children(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *parent_id);
ngx_int_t ngx_pt_content_delete_dist(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *parent_id);
ngx_int_t ngx_pt_content_delete_repo(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *name);
ngx_int_t ngx_pt_content_delete_image(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_dist_t *dist);


/* helpers (ngx_pt_util.c) */

ngx_int_t ngx_pt_uuid(ngx_pool_t *pool, ngx_str_t *out);

#define NGX_PT_NO_RETRY_AFTER  -2
ngx_msec_t ngx_pt_backoff(ngx_uint_t tries, ngx_int_t retry_after);
u_char *ngx_pt_uuid_format(u_char *dst, u_char *b);
ngx_int_t ngx_pt_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body);
ngx_int_t ngx_pt_now(ngx_pool_t *pool, ngx_str_t *out);
ngx_int_t ngx_pt_path_prefix(ngx_str_t *prefix, ngx_str_t *path);
ngx_int_t ngx_pt_oci_component_valid(u_char *p, size_t len);
u_char *ngx_pt_strfind(u_char *s1, u_char *last, u_char *s2, size_t n,
    ngx_uint_t caseless);
ngx_int_t ngx_pt_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars);


/* admin API (ngx_pt_admin.c, ngx_pt_admin_content.c) */

typedef struct {
    ngx_http_request_t         *r;
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_uint_t                  res;
    ngx_pt_type_t              *type;
    ngx_str_t                   id;          /* empty: the collection */
    ngx_uint_t                  versions;    /* .../<id>/versions/ */
    ngx_int_t                   version;     /* -1: all */
    ngx_str_t                   body;
    yajl_gen                    g;
    ngx_uint_t                  status;
} ngx_pt_admin_t;

ngx_int_t ngx_pt_admin_detail(ngx_pt_admin_t *ctx, ngx_uint_t status,
    const char *fmt, ...);
ngx_int_t ngx_pt_admin_store_error(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_page(ngx_pt_admin_t *ctx, ngx_uint_t count,
    ngx_int_t limit, ngx_int_t offset);
ngx_int_t ngx_pt_admin_page_args(ngx_pt_admin_t *ctx, ngx_int_t *limit,
    ngx_int_t *offset);
ngx_int_t ngx_pt_admin_versions(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_content(ngx_pt_admin_t *ctx, ngx_uint_t kind);
void ngx_pt_admin_render_repo(ngx_pt_admin_t *ctx, ngx_pt_repo_t *repo);
void ngx_pt_admin_render_dist(ngx_pt_admin_t *ctx, ngx_pt_dist_t *dist);


/* handlers */

ngx_int_t ngx_http_pullthrough_admin_handler(ngx_http_request_t *r);


#endif /* _NGX_PT_H_INCLUDED_ */
