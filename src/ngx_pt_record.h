
/*
 * ngx_pullthrough: records described by field tables: the tables
 * (ngx_pt_types.c), field values (ngx_pt_field.c), records as wholes
 * (ngx_pt_record.c) and the checks of their values (ngx_pt_check.c).
 */


#ifndef _NGX_PT_RECORD_H_INCLUDED_
#define _NGX_PT_RECORD_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_json.h>


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
    double                      tag_ttl;     /* s, NaN: the directive's */
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
    ngx_flag_t                  retain;      /* its content never evicted */
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
    ngx_array_t                *reserved;    /* ngx_str_t hrefs, "shared:"
                                                first when not exclusive */
} ngx_pt_task_t;


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
#define NGX_PT_F_FIXED      0x0080   /* shown and stored, set by the
                                        module: accepted and ignored on
                                        input */
#define NGX_PT_F_HOOKED     0x0100   /* stored, shown by its resource's
                                        hook rather than with the fields */

typedef struct {
    const char                 *name;
    ngx_uint_t                  type;
    ngx_uint_t                  flags;
    size_t                      offset;
    ngx_pt_check_pt             check;
    int64_t                     min;         /* numbers */
    int64_t                     max;         /* numbers; string length */
    const char                 *ref;         /* NGX_PT_T_REF: href path */
} ngx_pt_field_t;


typedef struct {
    const char                 *name;        /* for logs and tasks */
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

#define NGX_PT_HREF_LEN        256


/* ngx_pt_field.c: a field's value from JSON and back */
ngx_int_t ngx_pt_field_set(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v,
    void *rec, ngx_uint_t trusted, ngx_str_t *err);
void ngx_pt_field_render(yajl_gen g, ngx_pt_field_t *f, void *rec,
    ngx_uint_t stored);

/* ngx_pt_record.c */
void *ngx_pt_record_new(ngx_pool_t *pool, ngx_pt_type_t *type);
void *ngx_pt_record_copy(ngx_pool_t *pool, ngx_pt_type_t *type, void *rec);
ngx_int_t ngx_pt_record_input(ngx_pool_t *pool, ngx_pt_type_t *type,
    yajl_val obj, void *rec, ngx_uint_t mode, ngx_pt_errors_t *errs);
void ngx_pt_record_render(yajl_gen g, ngx_pt_type_t *type, void *rec);
void ngx_pt_record_render_meta(yajl_gen g, ngx_pt_type_t *type, void *rec);
void ngx_pt_record_render_fields(yajl_gen g, ngx_pt_type_t *type, void *rec,
    const char *skip);
void ngx_pt_record_render_field(yajl_gen g, ngx_pt_type_t *type, void *rec,
    const char *name);
void ngx_pt_record_href(ngx_pt_type_t *type, ngx_str_t *id, u_char *buf,
    ngx_str_t *out);
ngx_int_t ngx_pt_record_encode(ngx_pool_t *pool, ngx_pt_type_t *type,
    void *rec, ngx_str_t *out);
ngx_int_t ngx_pt_record_decode(ngx_pool_t *pool, ngx_pt_type_t *type,
    ngx_str_t *val, void **rec);
ngx_int_t ngx_pt_errors_init(ngx_pool_t *pool, ngx_pt_errors_t *errs);
ngx_int_t ngx_pt_error_add(ngx_pt_errors_t *errs, const char *field,
    ngx_str_t *message);
ngx_int_t ngx_pt_error_addc(ngx_pt_errors_t *errs, const char *field,
    const char *message);
void ngx_pt_errors_render(yajl_gen g, ngx_pt_errors_t *errs);

/* ngx_pt_check.c: what the tables check values with */
ngx_int_t ngx_pt_check_url(ngx_pool_t *pool, void *value, ngx_str_t *err);
ngx_int_t ngx_pt_check_proxy_url(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
ngx_int_t ngx_pt_check_cert(ngx_pool_t *pool, void *value, ngx_str_t *err);
ngx_int_t ngx_pt_check_key(ngx_pool_t *pool, void *value, ngx_str_t *err);
ngx_int_t ngx_pt_check_policy(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
ngx_int_t ngx_pt_check_base_path(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
ngx_int_t ngx_pt_check_content_guard(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
ngx_int_t ngx_pt_base_path_valid(ngx_str_t *path, ngx_str_t *err);
ngx_int_t ngx_pt_id_valid(ngx_str_t *id);
ngx_int_t ngx_pt_remote_validate(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_pt_errors_t *errs);


#endif /* _NGX_PT_RECORD_H_INCLUDED_ */
