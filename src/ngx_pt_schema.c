
/*
 * ngx_pullthrough: the records kept in the metadata store, described once
 * as field tables. The same table drives admin API input (validation with
 * Pulp's field errors), API output (secrets hidden) and the stored form
 * (a JSON document per record, secrets included: the store is 0600).
 */


#include <ngx_pt.h>

#include <math.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>


#define ngx_pt_field(rec, f)  ((u_char *) (rec) + (f)->offset)

#define NGX_PT_REMOTES_PATH   "remotes/container/pull-through/"
#define NGX_PT_REPOS_PATH     "repositories/container/container/"


static ngx_int_t ngx_pt_field_set(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, void *rec, ngx_uint_t trusted, ngx_str_t *err);
static ngx_int_t ngx_pt_set_str(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_str_t *s, ngx_uint_t trusted, ngx_str_t *err);
static ngx_int_t ngx_pt_set_bool(yajl_val v, ngx_flag_t *b, ngx_str_t *err);
static ngx_int_t ngx_pt_set_int(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, int64_t *n, ngx_str_t *err);
static ngx_int_t ngx_pt_set_num(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, double *n, ngx_str_t *err);
static ngx_int_t ngx_pt_set_strlist(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_array_t **a, ngx_str_t *err);
static ngx_int_t ngx_pt_set_labels(ngx_pool_t *pool, yajl_val v,
    ngx_array_t **a, ngx_str_t *err);
static ngx_int_t ngx_pt_set_headers(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_array_t **a, ngx_str_t *err);
static ngx_int_t ngx_pt_set_ref(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_str_t *s, ngx_uint_t trusted, ngx_str_t *err);
static void ngx_pt_type_error(yajl_val v, const char *expected,
    ngx_str_t *err, ngx_pool_t *pool);
static ngx_int_t ngx_pt_strdup(ngx_pool_t *pool, const char *s,
    ngx_str_t *out);
static void ngx_pt_render_value(yajl_gen g, ngx_pt_field_t *f, void *rec,
    ngx_uint_t stored);
static void ngx_pt_render_meta(yajl_gen g, ngx_pt_type_t *type, void *rec);

static ngx_int_t ngx_pt_check_url(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_proxy_url(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_cert(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_key(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_policy(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_base_path(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_check_content_guard(ngx_pool_t *pool, void *value,
    ngx_str_t *err);
static ngx_int_t ngx_pt_url_valid(ngx_str_t *url, ngx_uint_t proxy,
    ngx_str_t *err);
static EVP_PKEY *ngx_pt_read_key(ngx_str_t *pem);
static int ngx_pt_no_passphrase(char *buf, int size, int rwflag, void *u);
static void ngx_pt_remote_init(void *rec);
static void ngx_pt_dist_init(void *rec);
static void ngx_pt_repo_init(void *rec);


#define NGX_PT_NO_LIMIT  0, 0, NULL

static ngx_pt_field_t  ngx_pt_remote_fields[] = {

    { "name", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_remote_t, name), NULL, 0, 255, NULL },

    { "url", NGX_PT_T_STR, NGX_PT_F_REQUIRED|NGX_PT_F_TRIM,
      offsetof(ngx_pt_remote_t, url), ngx_pt_check_url, 0, 4096, NULL },

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
      0, 4096, NULL },

    { "proxy_username", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, proxy_username), NULL, 0, 4096, NULL },

    { "proxy_password", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, proxy_password), NULL, 0, 4096, NULL },

    { "username", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, username), NULL, 0, 4096, NULL },

    { "password", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_SECRET,
      offsetof(ngx_pt_remote_t, password), NULL, 0, 65536, NULL },

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
      offsetof(ngx_pt_dist_t, name), NULL, 0, 255, NULL },

    { "remote", NGX_PT_T_REF, NGX_PT_F_REQUIRED,
      offsetof(ngx_pt_dist_t, remote), NULL, 0, 0, NGX_PT_REMOTES_PATH },

    { "private", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, private), NULL, NGX_PT_NO_LIMIT },

    { "description", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, description), NULL, 0, 65536, NULL },

    { "distributions", NGX_PT_T_STR, NGX_PT_F_READONLY,
      0, NULL, NGX_PT_NO_LIMIT },

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


/* the per-image distributions made by pulls (read-only in the API) */

static ngx_pt_field_t  ngx_pt_dist_fields[] = {

    { "base_path", NGX_PT_T_STR, NGX_PT_F_REQUIRED,
      offsetof(ngx_pt_dist_t, base_path), NULL, NGX_PT_NO_LIMIT },

    { "content_guard", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, content_guard), NULL, NGX_PT_NO_LIMIT },

    { "hidden", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, hidden), NULL, NGX_PT_NO_LIMIT },

    { "pulp_labels", NGX_PT_T_LABELS, 0,
      offsetof(ngx_pt_dist_t, labels), NULL, NGX_PT_NO_LIMIT },

    { "name", NGX_PT_T_STR, NGX_PT_F_REQUIRED,
      offsetof(ngx_pt_dist_t, name), NULL, NGX_PT_NO_LIMIT },

    { "repository", NGX_PT_T_REF, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_dist_t, repository), NULL, 0, 0, NGX_PT_REPOS_PATH },

    { "remote", NGX_PT_T_REF, NGX_PT_F_NULLABLE,
      offsetof(ngx_pt_dist_t, remote), NULL, 0, 0, NGX_PT_REMOTES_PATH },

    { "private", NGX_PT_T_BOOL, 0,
      offsetof(ngx_pt_dist_t, private), NULL, NGX_PT_NO_LIMIT },

    { "description", NGX_PT_T_STR, NGX_PT_F_NULLABLE|NGX_PT_F_BLANK,
      offsetof(ngx_pt_dist_t, description), NULL, NGX_PT_NO_LIMIT },

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

    { NULL, 0, 0, 0, NULL, NGX_PT_NO_LIMIT }
};


ngx_pt_type_t  ngx_pt_remote_type = {
    "remote", NGX_PT_DB_REMOTES, NGX_PT_REMOTES_PATH,
    "container.containerpullthroughremote",
    ngx_pt_remote_fields, sizeof(ngx_pt_remote_t), ngx_pt_remote_init
};

ngx_pt_type_t  ngx_pt_pt_dist_type = {
    "distribution", NGX_PT_DB_PT_DISTS,
    "distributions/container/pull-through/",
    "container.containerpullthroughdistribution",
    ngx_pt_pt_dist_fields, sizeof(ngx_pt_dist_t), ngx_pt_dist_init
};

ngx_pt_type_t  ngx_pt_dist_type = {
    "distribution", NGX_PT_DB_DISTS,
    "distributions/container/container/",
    "container.containerdistribution",
    ngx_pt_dist_fields, sizeof(ngx_pt_dist_t), ngx_pt_dist_init
};

ngx_pt_type_t  ngx_pt_repo_type = {
    "repository", NGX_PT_DB_REPOS, NGX_PT_REPOS_PATH,
    "container.containerrepository",
    ngx_pt_repo_fields, sizeof(ngx_pt_repo_t), ngx_pt_repo_init
};

ngx_pt_type_t  ngx_pt_task_type = {
    "task", NGX_PT_DB_TASKS, "tasks/", "core.task",
    ngx_pt_task_fields, sizeof(ngx_pt_task_t), NULL
};


/* keys of every object that clients may send back and that are ignored */
static const char  *ngx_pt_readonly_keys[] = {
    "pulp_href", "prn", "pulp_created", "pulp_last_updated",
    "hidden_fields", NULL
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


void *
ngx_pt_record_new(ngx_pool_t *pool, ngx_pt_type_t *type)
{
    void  *rec;

    rec = ngx_pcalloc(pool, type->size);
    if (rec == NULL) {
        return NULL;
    }

    if (type->init) {
        type->init(rec);
    }

    return rec;
}


void *
ngx_pt_record_copy(ngx_pool_t *pool, ngx_pt_type_t *type, void *rec)
{
    void  *copy;

    /* shallow: input replaces values, it never edits them in place */

    copy = ngx_palloc(pool, type->size);
    if (copy == NULL) {
        return NULL;
    }

    ngx_memcpy(copy, rec, type->size);

    return copy;
}


ngx_int_t
ngx_pt_errors_init(ngx_pool_t *pool, ngx_pt_errors_t *errs)
{
    return ngx_array_init(&errs->items, pool, 4,
                          sizeof(ngx_pt_field_error_t));
}


ngx_int_t
ngx_pt_error_add(ngx_pt_errors_t *errs, const char *field,
    ngx_str_t *message)
{
    ngx_uint_t             i;
    ngx_pt_field_error_t  *e;

    /* the first problem found with a field is the one reported */

    e = errs->items.elts;
    for (i = 0; i < errs->items.nelts; i++) {
        if (e[i].field.len == ngx_strlen(field)
            && ngx_strncmp(e[i].field.data, field, e[i].field.len) == 0)
        {
            return NGX_OK;
        }
    }

    e = ngx_array_push(&errs->items);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->field.data = (u_char *) field;
    e->field.len = ngx_strlen(field);
    e->message = *message;

    return NGX_OK;
}


ngx_int_t
ngx_pt_error_addc(ngx_pt_errors_t *errs, const char *field,
    const char *message)
{
    ngx_str_t  m;

    m.data = (u_char *) message;
    m.len = ngx_strlen(message);

    return ngx_pt_error_add(errs, field, &m);
}


void
ngx_pt_errors_render(yajl_gen g, ngx_pt_errors_t *errs)
{
    ngx_uint_t             i;
    ngx_pt_field_error_t  *e;

    e = errs->items.elts;

    ngx_pt_json_map_open(g);

    for (i = 0; i < errs->items.nelts; i++) {
        yajl_gen_string(g, e[i].field.data, e[i].field.len);
        ngx_pt_json_array_open(g);
        ngx_pt_json_str(g, &e[i].message);
        ngx_pt_json_array_close(g);
    }

    ngx_pt_json_map_close(g);
}


/*
 * Applies the members of a JSON object to a record, Django REST framework
 * style: unknown members, wrong types and invalid values become field
 * errors; read-only members are ignored.
 */

ngx_int_t
ngx_pt_record_input(ngx_pool_t *pool, ngx_pt_type_t *type, yajl_val obj,
    void *rec, ngx_uint_t mode, ngx_pt_errors_t *errs)
{
    size_t           i;
    ngx_str_t        err;
    const char     **ro, *key;
    ngx_pt_field_t  *f;

    for (i = 0; i < obj->u.object.len; i++) {

        key = obj->u.object.keys[i];

        for (ro = ngx_pt_readonly_keys; *ro; ro++) {
            if (ngx_strcmp(*ro, key) == 0) {
                break;
            }
        }

        if (*ro) {
            continue;
        }

        for (f = type->fields; f->name; f++) {
            if (!(f->flags & NGX_PT_F_INTERNAL)
                && ngx_strcmp(f->name, key) == 0)
            {
                break;
            }
        }

        if (f->name == NULL) {
            if (ngx_pt_error_addc(errs, key, "Unexpected field") != NGX_OK) {
                return NGX_ERROR;
            }
            continue;
        }

        if (f->flags & NGX_PT_F_READONLY) {
            continue;
        }

        switch (ngx_pt_field_set(pool, f, obj->u.object.values[i], rec, 0,
                                 &err))
        {
        case NGX_OK:
            break;

        case NGX_DECLINED:
            if (ngx_pt_error_add(errs, f->name, &err) != NGX_OK) {
                return NGX_ERROR;
            }
            break;

        default:
            return NGX_ERROR;
        }
    }

    if (mode != NGX_PT_INPUT_PARTIAL) {
        for (f = type->fields; f->name; f++) {
            if ((f->flags & NGX_PT_F_REQUIRED)
                && ngx_pt_json_get(obj, f->name) == NULL
                && ngx_pt_error_addc(errs, f->name, "This field is required.")
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return errs->items.nelts ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_pt_field_set(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, void *rec,
    ngx_uint_t trusted, ngx_str_t *err)
{
    void  *p;

    p = ngx_pt_field(rec, f);

    switch (f->type) {

    case NGX_PT_T_STR:
        return ngx_pt_set_str(pool, f, v, p, trusted, err);

    case NGX_PT_T_BOOL:
        return ngx_pt_set_bool(v, p, err);

    case NGX_PT_T_INT:
        return ngx_pt_set_int(pool, f, v, p, err);

    case NGX_PT_T_NUM:
        return ngx_pt_set_num(pool, f, v, p, err);

    case NGX_PT_T_STRLIST:
        return ngx_pt_set_strlist(pool, f, v, p, err);

    case NGX_PT_T_LABELS:
        return ngx_pt_set_labels(pool, v, p, err);

    case NGX_PT_T_HEADERS:
        return ngx_pt_set_headers(pool, f, v, p, err);

    default: /* NGX_PT_T_REF */
        return ngx_pt_set_ref(pool, f, v, p, trusted, err);
    }
}


static ngx_int_t
ngx_pt_set_str(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, ngx_str_t *s,
    ngx_uint_t trusted, ngx_str_t *err)
{
    ngx_str_t  value;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        ngx_str_null(s);
        return NGX_OK;
    }

    if (!YAJL_IS_STRING(v)) {
        ngx_str_set(err, "Not a valid string.");
        return NGX_DECLINED;
    }

    if (!trusted && ngx_pt_json_has_nul(v->u.string)) {
        ngx_str_set(err, "Null characters are not allowed.");
        return NGX_DECLINED;
    }

    if (ngx_pt_strdup(pool, v->u.string, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!trusted) {

        if (f->flags & NGX_PT_F_TRIM) {
            /* as Django REST framework trims a CharField */
            while (value.len && isspace(value.data[0])) {
                value.data++;
                value.len--;
            }

            while (value.len && isspace(value.data[value.len - 1])) {
                value.len--;
            }
        }

        if (value.len == 0 && !(f->flags & NGX_PT_F_BLANK)) {
            ngx_str_set(err, "This field may not be blank.");
            return NGX_DECLINED;
        }

        if (f->max && (int64_t) value.len > f->max) {
            err->data = ngx_pnalloc(pool, 80);
            if (err->data == NULL) {
                return NGX_ERROR;
            }

            err->len = ngx_sprintf(err->data, "Ensure this field has no more "
                                   "than %L characters.", f->max)
                       - err->data;
            return NGX_DECLINED;
        }

        if (f->check && f->check(pool, &value, err) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    *s = value;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_set_bool(yajl_val v, ngx_flag_t *b, ngx_str_t *err)
{
    size_t       i;
    const char  *s;

    static const char  *yes[] = { "true", "True", "TRUE", "1", "yes", "on",
                                  "y", NULL };
    static const char  *no[] = { "false", "False", "FALSE", "0", "no", "off",
                                 "n", NULL };

    if (YAJL_IS_TRUE(v)) {
        *b = 1;
        return NGX_OK;
    }

    if (YAJL_IS_FALSE(v)) {
        *b = 0;
        return NGX_OK;
    }

    if (YAJL_IS_NULL(v)) {
        ngx_str_set(err, "This field may not be null.");
        return NGX_DECLINED;
    }

    /* form-style values, as httpie's "field=value" sends them */

    if (YAJL_IS_STRING(v)) {
        s = v->u.string;

        for (i = 0; yes[i]; i++) {
            if (ngx_strcmp(s, yes[i]) == 0) {
                *b = 1;
                return NGX_OK;
            }
        }

        for (i = 0; no[i]; i++) {
            if (ngx_strcmp(s, no[i]) == 0) {
                *b = 0;
                return NGX_OK;
            }
        }
    }

    if (YAJL_IS_INTEGER(v)
        && (YAJL_GET_INTEGER(v) == 0 || YAJL_GET_INTEGER(v) == 1))
    {
        *b = YAJL_GET_INTEGER(v);
        return NGX_OK;
    }

    ngx_str_set(err, "Must be a valid boolean.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_int(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, int64_t *n,
    ngx_str_t *err)
{
    char       *end;
    double      d;
    int64_t     value;
    long long   ll;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *n = NGX_PT_NULL_INT;
        return NGX_OK;
    }

    if (YAJL_IS_INTEGER(v)) {
        value = YAJL_GET_INTEGER(v);

    } else if (YAJL_IS_DOUBLE(v)) {
        d = YAJL_GET_DOUBLE(v);

        if (d != floor(d) || d > 1e15 || d < -1e15) {
            goto invalid;
        }

        value = (int64_t) d;

    } else if (YAJL_IS_STRING(v) && v->u.string[0] != '\0') {
        errno = 0;
        ll = strtoll(v->u.string, &end, 10);

        if (errno || *end != '\0' || ngx_strchr(v->u.string, ' ')) {
            goto invalid;
        }

        value = ll;

    } else {
        goto invalid;
    }

    if (value < f->min || (f->max && value > f->max)) {
        err->data = ngx_pnalloc(pool, 80);
        if (err->data == NULL) {
            return NGX_ERROR;
        }

        err->len = (value < f->min)
                   ? ngx_sprintf(err->data, "Ensure this value is greater "
                                 "than or equal to %L.", f->min) - err->data
                   : ngx_sprintf(err->data, "Ensure this value is less "
                                 "than or equal to %L.", f->max) - err->data;
        return NGX_DECLINED;
    }

    *n = value;
    return NGX_OK;

invalid:

    ngx_str_set(err, "A valid integer is required.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_num(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, double *n,
    ngx_str_t *err)
{
    char    *end;
    double   d;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *n = NAN;
        return NGX_OK;
    }

    if (YAJL_IS_NUMBER(v)) {
        d = YAJL_IS_INTEGER(v) ? (double) YAJL_GET_INTEGER(v)
                               : YAJL_GET_DOUBLE(v);

    } else if (YAJL_IS_STRING(v) && v->u.string[0] != '\0') {
        errno = 0;
        d = strtod(v->u.string, &end);

        if (errno || *end != '\0') {
            goto invalid;
        }

    } else {
        goto invalid;
    }

    if (!isfinite(d)) {
        goto invalid;
    }

    if (d < (double) f->min) {
        err->data = ngx_pnalloc(pool, 80);
        if (err->data == NULL) {
            return NGX_ERROR;
        }

        err->len = ngx_sprintf(err->data, "Ensure this value is greater "
                               "than or equal to %L.0.", f->min)
                   - err->data;
        return NGX_DECLINED;
    }

    *n = d;
    return NGX_OK;

invalid:

    ngx_str_set(err, "A valid number is required.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_strlist(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v,
    ngx_array_t **a, ngx_str_t *err)
{
    size_t       i;
    yajl_val     item;
    ngx_str_t   *s;
    ngx_array_t  *list;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *a = NULL;
        return NGX_OK;
    }

    if (!YAJL_IS_ARRAY(v)) {
        ngx_pt_type_error(v, "a list of items", err, pool);
        return NGX_DECLINED;
    }

    if (f->max && (int64_t) v->u.array.len > f->max) {
        ngx_str_set(err, "Too many items.");
        return NGX_DECLINED;
    }

    list = ngx_array_create(pool, v->u.array.len + 1, sizeof(ngx_str_t));
    if (list == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.array.len; i++) {
        item = v->u.array.values[i];

        if (!YAJL_IS_STRING(item)) {
            ngx_str_set(err, "Not a valid string.");
            return NGX_DECLINED;
        }

        if (ngx_strlen(item->u.string) > 255) {
            ngx_str_set(err, "Items may have at most 255 characters.");
            return NGX_DECLINED;
        }

        if (ngx_pt_json_has_nul(item->u.string)) {
            ngx_str_set(err, "Null characters are not allowed.");
            return NGX_DECLINED;
        }

        s = ngx_array_push(list);
        if (s == NULL || ngx_pt_strdup(pool, item->u.string, s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *a = list;
    return NGX_OK;
}


static ngx_int_t
ngx_pt_set_labels(ngx_pool_t *pool, yajl_val v, ngx_array_t **a,
    ngx_str_t *err)
{
    size_t         i;
    u_char        *p;
    yajl_val       value;
    ngx_array_t   *labels;
    ngx_keyval_t  *kv;

    if (YAJL_IS_NULL(v)) {
        ngx_str_set(err, "This field may not be null.");
        return NGX_DECLINED;
    }

    if (!YAJL_IS_OBJECT(v)) {
        ngx_pt_type_error(v, "a dictionary of items", err, pool);
        return NGX_DECLINED;
    }

    labels = ngx_array_create(pool, v->u.object.len + 1,
                              sizeof(ngx_keyval_t));
    if (labels == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.object.len; i++) {
        value = v->u.object.values[i];

        if (!YAJL_IS_STRING(value)) {
            ngx_str_set(err, "Label values must be strings.");
            return NGX_DECLINED;
        }

        if (ngx_pt_json_has_nul(value->u.string)) {
            ngx_str_set(err, "Null characters are not allowed.");
            return NGX_DECLINED;
        }

        /* Pulp allows word characters, spaces, dots and dashes in keys */

        for (p = (u_char *) v->u.object.keys[i]; *p; p++) {
            if (!(isalnum(*p) || *p == '_' || *p == ' ' || *p == '-'
                  || *p == '.' || *p >= 0x80))
            {
                break;
            }
        }

        if (*p || p == (u_char *) v->u.object.keys[i]
            || ngx_pt_json_has_nul(v->u.object.keys[i]))
        {
            ngx_str_set(err, "Label keys may contain only letters, digits, "
                        "spaces, '_', '-' and '.'.");
            return NGX_DECLINED;
        }

        kv = ngx_array_push(labels);
        if (kv == NULL
            || ngx_pt_strdup(pool, v->u.object.keys[i], &kv->key) != NGX_OK
            || ngx_pt_strdup(pool, value->u.string, &kv->value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *a = labels;
    return NGX_OK;
}


static ngx_int_t
ngx_pt_set_headers(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v,
    ngx_array_t **a, ngx_str_t *err)
{
    size_t         i;
    u_char        *p;
    yajl_val       item, value;
    ngx_array_t   *headers;
    ngx_keyval_t  *kv;

    if (YAJL_IS_NULL(v)) {
        *a = NULL;
        return NGX_OK;
    }

    if (!YAJL_IS_ARRAY(v)) {
        ngx_pt_type_error(v, "a list of items", err, pool);
        return NGX_DECLINED;
    }

    headers = ngx_array_create(pool, v->u.array.len + 1,
                               sizeof(ngx_keyval_t));
    if (headers == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.array.len; i++) {
        item = v->u.array.values[i];

        if (!YAJL_IS_OBJECT(item) || item->u.object.len != 1
            || !YAJL_IS_STRING(item->u.object.values[0]))
        {
            ngx_str_set(err, "Each header must be an object with one name "
                        "and one string value, such as "
                        "{\"X-Name\": \"value\"}.");
            return NGX_DECLINED;
        }

        /* a header name is an HTTP token; a value holds no line breaks */

        for (p = (u_char *) item->u.object.keys[0]; *p; p++) {
            if (*p <= 0x20 || *p >= 0x7f
                || ngx_strchr("()<>@,;:\\\"/[]?={}", *p))
            {
                break;
            }
        }

        if (*p || p == (u_char *) item->u.object.keys[0]) {
            ngx_str_set(err, "Invalid header name.");
            return NGX_DECLINED;
        }

        value = item->u.object.values[0];

        for (p = (u_char *) value->u.string; *p; p++) {
            if (*p == CR || *p == LF) {
                break;
            }
        }

        if (*p || ngx_pt_json_has_nul(value->u.string)) {
            ngx_str_set(err, "Header values must not contain line breaks "
                        "or null characters.");
            return NGX_DECLINED;
        }

        kv = ngx_array_push(headers);
        if (kv == NULL
            || ngx_pt_strdup(pool, item->u.object.keys[0], &kv->key) != NGX_OK
            || ngx_pt_strdup(pool, value->u.string, &kv->value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *a = headers;
    return NGX_OK;
}


/*
 * A related object: an href such as "/pulp/api/v3/remotes/.../<id>/" (or
 * an absolute URL ending so) in the API, the bare id in the store.
 */

static ngx_int_t
ngx_pt_set_ref(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, ngx_str_t *s,
    ngx_uint_t trusted, ngx_str_t *err)
{
    size_t      root, path;
    u_char     *p, *last;
    ngx_str_t   value, id;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        ngx_str_null(s);
        return NGX_OK;
    }

    if (!YAJL_IS_STRING(v)) {
        ngx_pt_type_error(v, "a URL string", err, pool);
        return NGX_DECLINED;
    }

    if (ngx_pt_strdup(pool, v->u.string, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (trusted) {
        *s = value;
        return NGX_OK;
    }

    p = value.data;
    last = p + value.len;

    if (value.len > 8 && (ngx_strncasecmp(p, (u_char *) "http://", 7) == 0
                          || ngx_strncasecmp(p, (u_char *) "https://", 8) == 0))
    {
        p = ngx_strlchr(p + 8, last, '/');
        if (p == NULL) {
            goto invalid;
        }
    }

    root = sizeof(NGX_PT_API_ROOT) - 1;
    path = ngx_strlen(f->ref);

    if ((size_t) (last - p) < root + path + NGX_PT_UUID_LEN
        || ngx_strncmp(p, NGX_PT_API_ROOT, root) != 0
        || ngx_strncmp(p + root, f->ref, path) != 0)
    {
        goto invalid;
    }

    id.data = p + root + path;
    id.len = NGX_PT_UUID_LEN;

    p = id.data + id.len;

    if (!ngx_pt_id_valid(&id)
        || !(p == last || (p + 1 == last && *p == '/')))
    {
        goto invalid;
    }

    *s = id;
    return NGX_OK;

invalid:

    ngx_str_set(err, "Invalid hyperlink - No URL match.");
    return NGX_DECLINED;
}


static void
ngx_pt_type_error(yajl_val v, const char *expected, ngx_str_t *err,
    ngx_pool_t *pool)
{
    const char  *got;

    if (YAJL_IS_STRING(v)) {
        got = "str";

    } else if (YAJL_IS_OBJECT(v)) {
        got = "dict";

    } else if (YAJL_IS_ARRAY(v)) {
        got = "list";

    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        got = "bool";

    } else if (YAJL_IS_INTEGER(v)) {
        got = "int";

    } else {
        got = "float";
    }

    err->data = ngx_pnalloc(pool, 128);
    if (err->data == NULL) {
        ngx_str_set(err, "Invalid type.");
        return;
    }

    err->len = ngx_sprintf(err->data, "Expected %s but got type \"%s\".",
                           expected, got)
               - err->data;
}


static ngx_int_t
ngx_pt_strdup(ngx_pool_t *pool, const char *s, ngx_str_t *out)
{
    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len + 1);

    return NGX_OK;
}


/* field checks */

static ngx_int_t
ngx_pt_check_url(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_url_valid(value, 0, err);
}


static ngx_int_t
ngx_pt_check_proxy_url(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_url_valid(value, 1, err);
}


static ngx_int_t
ngx_pt_url_valid(ngx_str_t *url, ngx_uint_t proxy, ngx_str_t *err)
{
    u_char  *p, *host, *last, *port;

    p = url->data;
    last = p + url->len;

    for (host = p; host < last; host++) {
        if (*host <= 0x20 || *host == 0x7f) {
            ngx_str_set(err, "Enter a valid URL: it contains spaces or "
                        "control characters.");
            return NGX_DECLINED;
        }
    }

    if (url->len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        host = p + 7;

    } else if (url->len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        host = p + 8;

    } else {
        ngx_str_set(err, "Enter a valid URL: the scheme must be http:// or "
                    "https://.");
        return NGX_DECLINED;
    }

    for (p = host; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') {
            if (proxy) {
                ngx_str_set(err, "The proxy URL must not contain "
                            "credentials: set proxy_username and "
                            "proxy_password instead.");
            } else {
                ngx_str_set(err, "The URL must not contain credentials: "
                            "set username and password instead.");
            }

            return NGX_DECLINED;
        }
    }

    last = p;

    if (host == last) {
        ngx_str_set(err, "Enter a valid URL: the host is missing.");
        return NGX_DECLINED;
    }

    /* an optional port after the host (or after "]" for IPv6) */

    if (*host == '[') {
        port = ngx_strlchr(host, last, ']');
        if (port == NULL || port == host + 1) {
            goto invalid;
        }

        port++;

        if (port < last && *port != ':') {
            goto invalid;
        }

    } else {
        port = ngx_strlchr(host, last, ':');

        if (port == host) {
            goto invalid;
        }

        for (p = host; p < (port ? port : last); p++) {
            if (!(isalnum(*p) || *p == '-' || *p == '.' || *p == '_')) {
                goto invalid;
            }
        }
    }

    if (port && port < last) {
        port++;

        if (port == last || ngx_atoi(port, last - port) == NGX_ERROR
            || ngx_atoi(port, last - port) > 65535)
        {
            goto invalid;
        }
    }

    return NGX_OK;

invalid:

    ngx_str_set(err, "Enter a valid URL: the host or port is invalid.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_check_cert(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    BIO         *bio;
    X509        *x;
    ngx_str_t   *pem = value;
    ngx_uint_t   n;

    bio = BIO_new_mem_buf(pem->data, pem->len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    for (n = 0; ; n++) {
        x = PEM_read_bio_X509(bio, NULL, ngx_pt_no_passphrase, NULL);
        if (x == NULL) {
            break;
        }

        X509_free(x);
    }

    BIO_free(bio);
    ERR_clear_error();

    if (n == 0) {
        ngx_str_set(err, "Invalid certificate: no PEM-encoded X.509 "
                    "certificate found.");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_check_key(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    EVP_PKEY  *key;

    key = ngx_pt_read_key(value);

    if (key == NULL) {
        ngx_str_set(err, "Invalid private key: no unencrypted PEM-encoded "
                    "private key found.");
        return NGX_DECLINED;
    }

    EVP_PKEY_free(key);

    return NGX_OK;
}


static EVP_PKEY *
ngx_pt_read_key(ngx_str_t *pem)
{
    BIO       *bio;
    EVP_PKEY  *key;

    bio = BIO_new_mem_buf(pem->data, pem->len);
    if (bio == NULL) {
        return NULL;
    }

    key = PEM_read_bio_PrivateKey(bio, NULL, ngx_pt_no_passphrase, NULL);

    BIO_free(bio);
    ERR_clear_error();

    return key;
}


/* never prompt on a terminal for a passphrase: encrypted keys are refused */

static int
ngx_pt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}


static ngx_int_t
ngx_pt_check_policy(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    ngx_str_t  *s = value;

    if (s->len == sizeof("on_demand") - 1
        && ngx_strncmp(s->data, "on_demand", s->len) == 0)
    {
        return NGX_OK;
    }

    err->data = ngx_pnalloc(pool, s->len + 64);
    if (err->data == NULL) {
        return NGX_ERROR;
    }

    err->len = ngx_sprintf(err->data, "\"%V\" is not a valid choice.", s)
               - err->data;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_check_base_path(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_base_path_valid(value, err) ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_pt_base_path_valid(ngx_str_t *path, ngx_str_t *err)
{
    u_char  *p, *c, *last;

    if (path->len > 255) {
        ngx_str_set(err, "Ensure this field has no more than 255 "
                    "characters.");
        return 0;
    }

    if (path->data[0] == '/' || path->data[path->len - 1] == '/') {
        ngx_str_set(err, "The base path must not start or end with '/'.");
        return 0;
    }

    last = path->data + path->len;

    for (c = path->data; c < last; c = p + 1) {
        p = ngx_strlchr(c, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (!ngx_pt_oci_component_valid(c, p - c)) {
            ngx_str_set(err, "Each path component must be lowercase letters "
                        "and digits, separated by '.', '_', '__' or '-' "
                        "(the OCI repository name grammar).");
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_pt_check_content_guard(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    ngx_str_t  *s = value;

    if (s->len == 0) {
        return NGX_OK;
    }

    ngx_str_set(err, "Content guards are not supported.");
    return NGX_DECLINED;
}


ngx_int_t
ngx_pt_id_valid(ngx_str_t *id)
{
    ngx_uint_t  i;

    if (id->len != NGX_PT_UUID_LEN) {
        return 0;
    }

    for (i = 0; i < NGX_PT_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id->data[i] != '-') {
                return 0;
            }

        } else if (!((id->data[i] >= '0' && id->data[i] <= '9')
                     || (id->data[i] >= 'a' && id->data[i] <= 'f')))
        {
            return 0;
        }
    }

    return 1;
}


/* cross-field checks of a remote, after its fields passed their own */

ngx_int_t
ngx_pt_remote_validate(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_pt_errors_t *errs)
{
    BIO       *bio;
    X509      *cert;
    EVP_PKEY  *key;
    ngx_int_t  ok;

    if (remote->client_key.data && remote->client_cert.data == NULL) {
        return ngx_pt_error_addc(errs, "client_cert", "A client certificate "
                                 "is required with client_key.");
    }

    if (remote->client_key.data == NULL || remote->client_cert.data == NULL) {
        return NGX_OK;
    }

    bio = BIO_new_mem_buf(remote->client_cert.data, remote->client_cert.len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    cert = PEM_read_bio_X509(bio, NULL, ngx_pt_no_passphrase, NULL);
    BIO_free(bio);

    key = ngx_pt_read_key(&remote->client_key);

    ok = (cert && key && X509_check_private_key(cert, key) == 1);

    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();

    if (!ok) {
        return ngx_pt_error_addc(errs, "client_key", "The private key does "
                                 "not match client_cert.");
    }

    return NGX_OK;
}


/* output */

void
ngx_pt_record_href(ngx_pt_type_t *type, ngx_str_t *id, u_char *buf,
    ngx_str_t *out)
{
    /* buf has room for NGX_PT_API_ROOT, the longest path and an id */

    out->data = buf;
    out->len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s%V/", type->path, id)
               - buf;
}


static void
ngx_pt_render_meta(yajl_gen g, ngx_pt_type_t *type, void *rec)
{
    u_char          buf[256];
    ngx_str_t       s;
    ngx_pt_meta_t  *meta = rec;

    ngx_pt_record_href(type, &meta->id, buf, &s);
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &s);

    s.data = buf;
    s.len = ngx_sprintf(buf, "prn:%s:%V", type->prn, &meta->id) - buf;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    ngx_pt_json_key(g, "pulp_created");
    ngx_pt_json_str(g, &meta->created);
    ngx_pt_json_key(g, "pulp_last_updated");
    ngx_pt_json_str(g, &meta->updated);
}


/*
 * Emits the members of a record as the API shows them, without the
 * enclosing braces so that callers may add computed members.
 */

void
ngx_pt_record_render(yajl_gen g, ngx_pt_type_t *type, void *rec)
{
    ngx_str_t       *s;
    ngx_uint_t       secrets;
    ngx_pt_field_t  *f;

    ngx_pt_render_meta(g, type, rec);

    secrets = 0;

    for (f = type->fields; f->name; f++) {

        if (f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_READONLY)) {
            continue;
        }

        if (f->flags & NGX_PT_F_SECRET) {
            secrets++;
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_render_value(g, f, rec, 0);
    }

    if (secrets == 0) {
        return;
    }

    ngx_pt_json_key(g, "hidden_fields");
    ngx_pt_json_array_open(g);

    for (f = type->fields; f->name; f++) {
        if (f->flags & NGX_PT_F_SECRET) {
            s = (ngx_str_t *) ngx_pt_field(rec, f);

            ngx_pt_json_map_open(g);
            ngx_pt_json_key(g, "name");
            ngx_pt_json_cstr(g, f->name);
            ngx_pt_json_key(g, "is_set");
            ngx_pt_json_bool(g, s->data != NULL);
            ngx_pt_json_map_close(g);
        }
    }

    ngx_pt_json_array_close(g);
}


static void
ngx_pt_render_value(yajl_gen g, ngx_pt_field_t *f, void *rec,
    ngx_uint_t stored)
{
    u_char        *p, buf[256];
    ngx_str_t     *s, href;
    ngx_uint_t     i;
    ngx_array_t   *a;
    ngx_keyval_t  *kv;

    p = ngx_pt_field(rec, f);

    switch (f->type) {

    case NGX_PT_T_STR:
        ngx_pt_json_str(g, (ngx_str_t *) p);
        break;

    case NGX_PT_T_BOOL:
        ngx_pt_json_bool(g, *(ngx_flag_t *) p);
        break;

    case NGX_PT_T_INT:
        ngx_pt_json_int(g, *(int64_t *) p);
        break;

    case NGX_PT_T_NUM:
        ngx_pt_json_num(g, *(double *) p);
        break;

    case NGX_PT_T_STRLIST:
        a = *(ngx_array_t **) p;

        if (a == NULL) {
            ngx_pt_json_null(g);
            break;
        }

        s = a->elts;
        ngx_pt_json_array_open(g);
        for (i = 0; i < a->nelts; i++) {
            ngx_pt_json_str(g, &s[i]);
        }
        ngx_pt_json_array_close(g);
        break;

    case NGX_PT_T_LABELS:
        a = *(ngx_array_t **) p;

        ngx_pt_json_map_open(g);
        if (a) {
            kv = a->elts;
            for (i = 0; i < a->nelts; i++) {
                yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
                ngx_pt_json_str(g, &kv[i].value);
            }
        }
        ngx_pt_json_map_close(g);
        break;

    case NGX_PT_T_HEADERS:
        a = *(ngx_array_t **) p;

        if (a == NULL) {
            ngx_pt_json_null(g);
            break;
        }

        kv = a->elts;
        ngx_pt_json_array_open(g);
        for (i = 0; i < a->nelts; i++) {
            ngx_pt_json_map_open(g);
            yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
            ngx_pt_json_str(g, &kv[i].value);
            ngx_pt_json_map_close(g);
        }
        ngx_pt_json_array_close(g);
        break;

    default: /* NGX_PT_T_REF */
        s = (ngx_str_t *) p;

        if (s->data == NULL || stored) {
            ngx_pt_json_str(g, s);
            break;
        }

        href.data = buf;
        href.len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s%V/", f->ref, s)
                   - buf;
        ngx_pt_json_str(g, &href);
        break;
    }
}


/* the stored form */

ngx_int_t
ngx_pt_record_save(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, void *rec)
{
    yajl_gen         g;
    ngx_str_t        val;
    ngx_pt_meta_t   *meta = rec;
    ngx_pt_field_t  *f;

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "id");
    ngx_pt_json_str(g, &meta->id);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, &meta->created);
    ngx_pt_json_key(g, "updated");
    ngx_pt_json_str(g, &meta->updated);

    for (f = type->fields; f->name; f++) {
        if (f->flags & NGX_PT_F_READONLY) {
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_render_value(g, f, rec, 1);
    }

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, pool, &val) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_db_put(log, txn, type->db, &meta->id, &val);
}


ngx_int_t
ngx_pt_record_decode(ngx_pool_t *pool, ngx_pt_type_t *type, ngx_str_t *val,
    void **recp)
{
    void            *rec;
    size_t           i;
    yajl_val         doc, v;
    ngx_str_t        err;
    const char      *key;
    ngx_pt_meta_t   *meta;
    ngx_pt_field_t  *f;

    doc = ngx_pt_json_parse(pool, val, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_ERROR;
    }

    rec = ngx_pt_record_new(pool, type);
    if (rec == NULL) {
        return NGX_ERROR;
    }

    meta = rec;

    for (i = 0; i < doc->u.object.len; i++) {
        key = doc->u.object.keys[i];
        v = doc->u.object.values[i];

        if (YAJL_IS_STRING(v)) {
            if (ngx_strcmp(key, "id") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->id);
                continue;
            }

            if (ngx_strcmp(key, "created") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->created);
                continue;
            }

            if (ngx_strcmp(key, "updated") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->updated);
                continue;
            }
        }

        for (f = type->fields; f->name; f++) {
            if (!(f->flags & NGX_PT_F_READONLY)
                && ngx_strcmp(f->name, key) == 0)
            {
                if (ngx_pt_field_set(pool, f, v, rec, 1, &err) == NGX_ERROR) {
                    return NGX_ERROR;
                }

                break;
            }
        }
    }

    if (meta->id.len == 0) {
        return NGX_ERROR;
    }

    *recp = rec;

    return NGX_OK;
}


ngx_int_t
ngx_pt_record_load(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **rec)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_db_get(log, txn, type->db, id, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_pt_record_decode(pool, type, &val, rec) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: %s record \"%V\" is corrupt",
                      type->name, id);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_record_delete(ngx_log_t *log, MDB_txn *txn, ngx_pt_type_t *type,
    ngx_str_t *id)
{
    return ngx_pt_db_del(log, txn, type->db, id);
}


/*
 * Records the registry reads on every request (distributions, remotes),
 * decoded once per worker: an entry is used while the stored bytes are the
 * same, and freed once replaced and no request holds it.
 */

#define NGX_PT_RECORD_CACHE  64

typedef struct {
    ngx_pt_type_t              *type;
    ngx_str_t                   raw;
    void                       *rec;
    ngx_pool_t                 *pool;
    ngx_uint_t                  refs;
    ngx_uint_t                  stale;
} ngx_pt_cached_t;


static ngx_pt_cached_t  *ngx_pt_record_cache[NGX_PT_RECORD_CACHE];
static ngx_uint_t        ngx_pt_record_cache_next;


static void
ngx_pt_cached_release(void *data)
{
    ngx_pt_cached_t *c = data;

    if (--c->refs == 0 && c->stale) {
        ngx_destroy_pool(c->pool);
    }
}


static void
ngx_pt_cached_drop(ngx_pt_cached_t *c)
{
    c->stale = 1;

    if (c->refs == 0) {
        ngx_destroy_pool(c->pool);
    }
}


ngx_int_t
ngx_pt_record_load_cached(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **recp)
{
    void                *rec;
    ngx_int_t            rc;
    ngx_str_t            val;
    ngx_uint_t           i, slot;
    ngx_pool_t          *cpool;
    ngx_pt_meta_t       *meta;
    ngx_pt_cached_t     *c;
    ngx_pool_cleanup_t  *cln;

    rc = ngx_pt_db_get(log, txn, type->db, id, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    slot = NGX_PT_RECORD_CACHE;

    for (i = 0; i < NGX_PT_RECORD_CACHE; i++) {
        c = ngx_pt_record_cache[i];

        if (c == NULL) {
            if (slot == NGX_PT_RECORD_CACHE) {
                slot = i;
            }
            continue;
        }

        meta = c->rec;

        if (c->type != type || meta->id.len != id->len
            || ngx_strncmp(meta->id.data, id->data, id->len) != 0)
        {
            continue;
        }

        if (c->raw.len == val.len
            && ngx_memcmp(c->raw.data, val.data, val.len) == 0)
        {
            c->refs++;
            cln->handler = ngx_pt_cached_release;
            cln->data = c;
            *recp = c->rec;
            return NGX_OK;
        }

        /* changed since: decode again */
        ngx_pt_record_cache[i] = NULL;
        ngx_pt_cached_drop(c);
        slot = i;
        break;
    }

    if (slot == NGX_PT_RECORD_CACHE) {
        slot = ngx_pt_record_cache_next++ % NGX_PT_RECORD_CACHE;
        ngx_pt_cached_drop(ngx_pt_record_cache[slot]);
        ngx_pt_record_cache[slot] = NULL;
    }

    cpool = ngx_create_pool(1024, ngx_cycle->log);
    if (cpool == NULL) {
        return NGX_ERROR;
    }

    c = ngx_pcalloc(cpool, sizeof(ngx_pt_cached_t));
    if (c == NULL) {
        ngx_destroy_pool(cpool);
        return NGX_ERROR;
    }

    c->raw.data = ngx_pnalloc(cpool, val.len);
    if (c->raw.data == NULL
        || ngx_pt_record_decode(cpool, type, &val, &rec) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: %s record \"%V\" is corrupt",
                      type->name, id);
        ngx_destroy_pool(cpool);
        return NGX_ERROR;
    }

    ngx_memcpy(c->raw.data, val.data, val.len);
    c->raw.len = val.len;
    c->type = type;
    c->rec = rec;
    c->pool = cpool;
    c->refs = 1;

    ngx_pt_record_cache[slot] = c;

    cln->handler = ngx_pt_cached_release;
    cln->data = c;

    *recp = rec;

    return NGX_OK;
}


/* whether a remote's url names Docker Hub (one of its hosts) */

ngx_int_t
ngx_pt_remote_docker_hub(ngx_pt_remote_t *remote, ngx_str_t *host)
{
    u_char      *p, *last;
    ngx_uint_t   i;

    static ngx_str_t  hosts[] = {
        ngx_string("registry-1.docker.io"),
        ngx_string("docker.io"),
        ngx_string("index.docker.io"),
        ngx_string("registry.hub.docker.com"),
    };

    p = ngx_pt_strfind(remote->url.data, remote->url.data + remote->url.len,
                       (u_char *) "://", 3, 0);
    if (p == NULL) {
        return 0;
    }

    p += 3;
    last = p;

    while (last < remote->url.data + remote->url.len
           && *last != '/' && *last != ':')
    {
        last++;
    }

    host->data = p;
    host->len = last - p;

    for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        if (host->len == hosts[i].len
            && ngx_strncasecmp(host->data, hosts[i].data, host->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* "Basic <base64 of user:password>", empty when the remote has no user */

ngx_int_t
ngx_pt_remote_basic(ngx_pool_t *pool, ngx_pt_remote_t *remote, ngx_str_t *out)
{
    ngx_str_t  plain, enc;

    ngx_str_null(out);

    if (remote->username.data == NULL) {
        return NGX_OK;
    }

    plain.len = remote->username.len + 1 + remote->password.len;
    plain.data = ngx_pnalloc(pool, plain.len);

    out->data = ngx_pnalloc(pool, sizeof("Basic ") - 1
                                  + ngx_base64_encoded_length(plain.len));

    if (plain.data == NULL || out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(plain.data, "%V:%V", &remote->username, &remote->password);

    enc.data = ngx_cpymem(out->data, "Basic ", sizeof("Basic ") - 1);
    ngx_encode_base64(&enc, &plain);

    out->len = sizeof("Basic ") - 1 + enc.len;

    return NGX_OK;
}
