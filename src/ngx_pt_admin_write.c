
/*
 * ngx_pullthrough: the admin API's writes, POST, PUT, PATCH and DELETE.
 * A write is one LMDB write transaction: the record, its checks against
 * other records, the indexes, what goes with it, and the task a 202 names
 * (already finished: the work is done by then). What differs between
 * resources are the hooks of the resource table (ngx_pt_admin.c): check,
 * index and remove, defined here for remotes and distributions.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


#define NGX_PT_TASK_CREATE   "pulpcore.app.tasks.base.general_create"
#define NGX_PT_TASK_UPDATE   "pulpcore.app.tasks.base.general_update"
#define NGX_PT_TASK_DELETE   "pulpcore.app.tasks.base.general_delete"

/* tasks kept: the newest NGX_PT_TASKS_KEEP, trimmed when there are
 * NGX_PT_TASKS_TRIM more (one walk of them per that many writes) */
#define NGX_PT_TASKS_KEEP    1000
#define NGX_PT_TASKS_TRIM    100


typedef struct {
    ngx_pool_t                 *pool;
    ngx_array_t                *tasks;       /* ngx_keyval_t: created, id */
} ngx_pt_task_walk_t;


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_pt_dist_t              *dist;
    ngx_pt_errors_t            *errs;
} ngx_pt_overlap_t;


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_str_t                  *remote;
    ngx_array_t                 users;       /* ngx_str_t names */
} ngx_pt_users_t;


static yajl_val ngx_pt_admin_body_object(ngx_pt_admin_t *ctx,
    ngx_int_t *rc);
static ngx_int_t ngx_pt_admin_same(ngx_pt_admin_t *ctx, void *rec,
    void *old);
static ngx_int_t ngx_pt_admin_answer(ngx_pt_admin_t *ctx, void *rec,
    ngx_str_t *task);
static ngx_int_t ngx_pt_admin_unique(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *value, ngx_str_t *self, const char *field,
    ngx_pt_errors_t *errs);
static ngx_int_t ngx_pt_admin_overlap(void *data, void *rec);
static ngx_int_t ngx_pt_admin_index(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *old, ngx_str_t *new, ngx_str_t *id);
static ngx_int_t ngx_pt_admin_users(void *data, void *rec);
static ngx_int_t ngx_pt_admin_tasks_trim(ngx_pt_admin_t *ctx, MDB_txn *txn);
static ngx_int_t ngx_pt_admin_task_seen(void *data, void *rec);
static int ngx_libc_cdecl ngx_pt_admin_task_cmp(const void *a, const void *b);


ngx_int_t
ngx_pt_admin_write(ngx_pt_admin_t *ctx)
{
    void        *rec, *old;
    u_char       buf[NGX_PT_HREF_LEN];
    MDB_txn     *txn;
    yajl_val     body;
    ngx_int_t    rc;
    ngx_str_t    href, task, *created;
    ngx_uint_t   at_once;
    const char  *name;

    body = NULL;
    rec = NULL;
    old = NULL;
    created = NULL;
    ngx_str_null(&task);

    if (ctx->r->method != NGX_HTTP_DELETE) {
        body = ngx_pt_admin_body_object(ctx, &rc);
        if (body == NULL) {
            /* NGX_OK: a 400 is in ctx */
            return rc == NGX_OK ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_pt_txn_begin(ctx->log, 1, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    rc = NGX_OK;

    if (ctx->id.len) {
        rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, ctx->type, &ctx->id,
                                &old);
        if (rc == NGX_DECLINED) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
        }
    }

    if (ctx->r->method == NGX_HTTP_DELETE) {
        name = NGX_PT_TASK_DELETE;

        if (rc == NGX_OK) {
            rc = ctx->res->remove(ctx, txn, old);
        }

    } else {
        name = old ? NGX_PT_TASK_UPDATE : NGX_PT_TASK_CREATE;

        if (rc == NGX_OK) {
            rc = ngx_pt_admin_save(ctx, txn, body, old,
                                   old == NULL ? NGX_PT_INPUT_CREATE
                                   : ctx->r->method == NGX_HTTP_PATCH
                                   ? NGX_PT_INPUT_PARTIAL
                                   : NGX_PT_INPUT_REPLACE,
                                   &rec);
        }

        if (rc == NGX_OK && old == NULL) {
            ngx_pt_record_href(ctx->type, &((ngx_pt_meta_t *) rec)->id, buf,
                               &href);
            created = &href;
        }
    }

    /* Pulp: a remote is created at once, everything else through a task */

    at_once = (old == NULL && rec && (ctx->res->flags & NGX_PT_ADMIN_AT_ONCE));

    if (rc == NGX_OK && !at_once) {
        rc = ngx_pt_admin_task(ctx, txn, name, "completed", created, &task,
                               NULL);
    }

    if (rc == NGX_OK) {
        /* a commit ends the transaction, whether it succeeds or not */
        rc = ngx_pt_txn_commit(ctx->log, txn);
        txn = NULL;
    }

    /* every way out of a write ends its transaction: none holds the lock */

    if (txn) {
        ngx_pt_txn_abort(txn);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "pullthrough admin: %V %V: %i",
                   &ctx->r->method_name, &ctx->r->uri, rc);

    if (rc == NGX_DECLINED) {
        /* refused: the answer is in ctx */
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    return ngx_pt_admin_answer(ctx, at_once ? rec : NULL, &task);
}


/*
 * A record from the body (mode: NGX_PT_INPUT_*), checked, indexed and
 * saved; NGX_DECLINED with the field errors in ctx. For the declarative
 * configuration (ctx->declared), NGX_DONE: the record is as the body
 * says already, and is left as it is.
 */

ngx_int_t
ngx_pt_admin_save(ngx_pt_admin_t *ctx, MDB_txn *txn, yajl_val body,
    void *old, ngx_uint_t mode, void **recp)
{
    void             *rec;
    ngx_int_t         rc;
    ngx_pt_meta_t    *meta;
    ngx_pt_errors_t   errs;

    if (old && !ctx->declared) {
        rec = ngx_pt_record_copy(ctx->pool, ctx->type, old);

    } else {
        /* the declarative configuration says all: what it omits is the
         * default, as on a create */
        rec = ngx_pt_record_new(ctx->pool, ctx->type);

        if (rec && old) {
            *(ngx_pt_meta_t *) rec = *(ngx_pt_meta_t *) old;
            mode = NGX_PT_INPUT_CREATE;
        }
    }

    if (rec == NULL || ngx_pt_errors_init(ctx->pool, &errs) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_record_input(ctx->pool, ctx->type, body, rec, mode, &errs);

    if (rc == NGX_OK && ctx->res->check) {
        rc = ctx->res->check(ctx, txn, rec, old, &errs);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (errs.items.nelts) {
        ngx_pt_errors_render(ctx->g, &errs);
        ctx->status = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    meta = rec;

    if (ctx->declared && old) {
        rc = ngx_pt_admin_same(ctx, rec, old);

        if (rc != NGX_DECLINED) {
            *recp = old;
            return rc;
        }
    }

    if (ngx_pt_now(ctx->pool, &meta->updated) != NGX_OK) {
        return NGX_ERROR;
    }

    if (old == NULL) {
        if (ngx_pt_uuid(ctx->pool, &meta->id) != NGX_OK) {
            return NGX_ERROR;
        }

        meta->created = meta->updated;
    }

    if ((ctx->res->index && ctx->res->index(ctx, txn, rec, old) != NGX_OK)
        || ngx_pt_record_save(ctx->pool, ctx->log, txn, ctx->type, rec)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    *recp = rec;

    return NGX_OK;
}


/* NGX_DONE: a record changed nothing but its time, NGX_DECLINED: more */

static ngx_int_t
ngx_pt_admin_same(ngx_pt_admin_t *ctx, void *rec, void *old)
{
    ngx_str_t       a, b, updated;
    ngx_pt_meta_t  *meta = rec;

    updated = meta->updated;
    meta->updated = ((ngx_pt_meta_t *) old)->updated;

    if (ngx_pt_record_encode(ctx->pool, ctx->type, rec, &a) != NGX_OK
        || ngx_pt_record_encode(ctx->pool, ctx->type, old, &b) != NGX_OK)
    {
        return NGX_ERROR;
    }

    meta->updated = updated;

    return (a.len == b.len && ngx_memcmp(a.data, b.data, a.len) == 0)
           ? NGX_DONE : NGX_DECLINED;
}


/* 201 and the record made, or 202 and the task */

static ngx_int_t
ngx_pt_admin_answer(ngx_pt_admin_t *ctx, void *rec, ngx_str_t *task)
{
    ngx_pt_json_map_open(ctx->g);

    if (rec) {
        ngx_pt_record_render(ctx->g, ctx->type, rec);
        ctx->status = NGX_HTTP_CREATED;

    } else {
        ngx_pt_json_key(ctx->g, "task");
        ngx_pt_json_str(ctx->g, task);
        ctx->status = NGX_HTTP_ACCEPTED;
    }

    ngx_pt_json_map_close(ctx->g);

    return NGX_OK;
}


/* the request body as a JSON object, or NULL with the 400 in ctx */

static yajl_val
ngx_pt_admin_body_object(ngx_pt_admin_t *ctx, ngx_int_t *rc)
{
    yajl_val   v;
    ngx_str_t  err;

    *rc = NGX_OK;

    v = ngx_pt_json_parse_input(ctx->pool, &ctx->body, &err);

    if (v == NULL) {
        if (err.len == 0) {
            *rc = NGX_ERROR;
            return NULL;
        }

        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_BAD_REQUEST,
                                   "JSON parse error - %V", &err);
        return NULL;
    }

    if (!YAJL_IS_OBJECT(v)) {
        ngx_pt_json_map_open(ctx->g);
        ngx_pt_json_key(ctx->g, "non_field_errors");
        ngx_pt_json_array_open(ctx->g);
        ngx_pt_json_cstr(ctx->g,
            YAJL_IS_ARRAY(v)
            ? "Invalid data. Expected a dictionary, but got list."
            : YAJL_IS_STRING(v)
            ? "Invalid data. Expected a dictionary, but got str."
            : (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
            ? "Invalid data. Expected a dictionary, but got bool."
            : YAJL_IS_INTEGER(v)
            ? "Invalid data. Expected a dictionary, but got int."
            : YAJL_IS_NUMBER(v)
            ? "Invalid data. Expected a dictionary, but got float."
            : "Invalid data. Expected a dictionary, but got NoneType.");
        ngx_pt_json_array_close(ctx->g);
        ngx_pt_json_map_close(ctx->g);
        ctx->status = NGX_HTTP_BAD_REQUEST;
        return NULL;
    }

    return v;
}


/* hooks: remotes */

ngx_int_t
ngx_pt_admin_check_remote(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec,
    void *old, ngx_pt_errors_t *errs)
{
    ngx_pt_remote_t  *remote = rec;

    if (ngx_pt_remote_validate(ctx->pool, remote, errs) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_REMOTE_NAMES,
                               &remote->name,
                               old ? &((ngx_pt_meta_t *) old)->id : NULL,
                               "name", errs);
}


ngx_int_t
ngx_pt_admin_index_remote(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec,
    void *old)
{
    ngx_pt_remote_t  *remote = rec;

    return ngx_pt_admin_index(ctx, txn, NGX_PT_DB_REMOTE_NAMES,
                              old ? &((ngx_pt_remote_t *) old)->name : NULL,
                              &remote->name, &remote->meta.id);
}


/*
 * Pulp lets a deleted remote dangle under its distributions; refusing is
 * kinder than a cache that fails on the next miss.
 */

ngx_int_t
ngx_pt_admin_remove_remote(ngx_pt_admin_t *ctx, MDB_txn *txn, void *old)
{
    u_char           *p, *last;
    size_t            len;
    ngx_str_t        *names;
    ngx_uint_t        i;
    ngx_pt_users_t    u;
    ngx_pt_remote_t  *remote = old;

    u.ctx = ctx;
    u.remote = &remote->meta.id;

    if (ngx_array_init(&u.users, ctx->pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_pt_record_each(ctx->pool, ctx->log, txn,
                              &ngx_pt_pt_dist_type, ngx_pt_admin_users, &u)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (u.users.nelts == 0) {
        if (ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_REMOTE_NAMES,
                             &remote->name) == NGX_ERROR
            || ngx_pt_record_delete(ctx->log, txn, ctx->type,
                                    &remote->meta.id) == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    names = u.users.elts;
    len = 0;

    for (i = 0; i < u.users.nelts; i++) {
        len += names[i].len + 4;
    }

    p = ngx_pnalloc(ctx->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = p;

    for (i = 0; i < u.users.nelts; i++) {
        last = ngx_sprintf(last, "%s\"%V\"", i ? ", " : "", &names[i]);
    }

    return ngx_pt_admin_detail(ctx, NGX_HTTP_CONFLICT,
                               "Remote \"%V\" is used by distribution(s) "
                               "%*s; delete them or point them at another "
                               "remote first.",
                               &remote->name, last - p, p);
}


static ngx_int_t
ngx_pt_admin_users(void *data, void *rec)
{
    ngx_pt_users_t *u = data;

    ngx_str_t      *name;
    ngx_pt_dist_t  *dist = rec;

    if (dist->remote.len == u->remote->len
        && ngx_strncmp(dist->remote.data, u->remote->data, dist->remote.len)
           == 0)
    {
        name = ngx_array_push(&u->users);
        if (name == NULL) {
            return NGX_ERROR;
        }

        *name = dist->name;
    }

    return NGX_OK;
}


/* hooks: pull-through distributions */

ngx_int_t
ngx_pt_admin_check_dist(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec,
    void *old, ngx_pt_errors_t *errs)
{
    ngx_int_t          rc;
    ngx_str_t          val, *self;
    ngx_pt_dist_t     *dist = rec;
    ngx_pt_overlap_t   ov;

    self = old ? &((ngx_pt_meta_t *) old)->id : NULL;

    rc = ngx_pt_record_raw(ctx->log, txn, &ngx_pt_remote_type, &dist->remote,
                           &val);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        && ngx_pt_error_addc(errs, "remote", "Invalid hyperlink - Object "
                             "does not exist.") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_DIST_NAMES, &dist->name, self,
                            "name", errs)
        != NGX_OK
        || ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_DIST_PATHS,
                               &dist->base_path, self, "base_path", errs)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ov.ctx = ctx;
    ov.dist = dist;
    ov.errs = errs;

    return ngx_pt_record_each(ctx->pool, ctx->log, txn, &ngx_pt_pt_dist_type,
                              ngx_pt_admin_overlap, &ov);
}


ngx_int_t
ngx_pt_admin_index_dist(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec,
    void *old)
{
    ngx_str_t      *oname, *opath;
    ngx_pt_dist_t  *dist = rec;

    oname = old ? &((ngx_pt_dist_t *) old)->name : NULL;
    opath = old ? &((ngx_pt_dist_t *) old)->base_path : NULL;

    if (ngx_pt_admin_index(ctx, txn, NGX_PT_DB_DIST_NAMES, oname, &dist->name,
                           &dist->meta.id) != NGX_OK
        || ngx_pt_admin_index(ctx, txn, NGX_PT_DB_DIST_PATHS, opath,
                              &dist->base_path, &dist->meta.id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the images cached under an old base_path no longer exist */

    if (opath
        && (opath->len != dist->base_path.len
            || ngx_strncmp(opath->data, dist->base_path.data, opath->len)
               != 0))
    {
        return ngx_pt_content_delete_dist(ctx->pool, ctx->log, txn,
                                          &dist->meta.id, opath);
    }

    return NGX_OK;
}


/* the per-image distributions go with their parent */

ngx_int_t
ngx_pt_admin_remove_dist(ngx_pt_admin_t *ctx, MDB_txn *txn, void *old)
{
    ngx_pt_dist_t  *dist = old;

    if (ngx_pt_content_delete_dist(ctx->pool, ctx->log, txn, &dist->meta.id,
                                   &dist->base_path)
        != NGX_OK
        || ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_DIST_NAMES, &dist->name)
           == NGX_ERROR
        || ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_DIST_PATHS,
                            &dist->base_path) == NGX_ERROR
        || ngx_pt_record_delete(ctx->log, txn, ctx->type, &dist->meta.id)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* hooks: repositories, deleted with their per-image distribution */

ngx_int_t
ngx_pt_admin_remove_repo(ngx_pt_admin_t *ctx, MDB_txn *txn, void *old)
{
    ngx_pt_repo_t  *repo = old;

    return ngx_pt_content_delete_repo(ctx->pool, ctx->log, txn, &repo->name);
}


/* hooks: per-image distributions, deleted with what their pulls made */

ngx_int_t
ngx_pt_admin_remove_image(ngx_pt_admin_t *ctx, MDB_txn *txn, void *old)
{
    return ngx_pt_content_delete_image(ctx->pool, ctx->log, txn, old);
}


static ngx_int_t
ngx_pt_admin_unique(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *value, ngx_str_t *self, const char *field,
    ngx_pt_errors_t *errs)
{
    ngx_int_t  rc;
    ngx_str_t  id;

    rc = ngx_pt_index_get(ctx->log, txn, db, value, &id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        || (self && id.len == self->len
            && ngx_strncmp(id.data, self->data, id.len) == 0))
    {
        return NGX_OK;
    }

    return ngx_pt_error_addc(errs, field, "This field must be unique.");
}

/*
 * base_paths of pull-through distributions may not nest on component
 * boundaries: the registry could not tell which one a name belongs to.
 */

static ngx_int_t
ngx_pt_admin_overlap(void *data, void *rec)
{
    ngx_pt_overlap_t *ov = data;

    u_char         *p;
    ngx_str_t       msg;
    ngx_pt_dist_t  *other, *dist;

    dist = ov->dist;
    other = rec;

    if (dist->meta.id.len == other->meta.id.len
        && ngx_strncmp(dist->meta.id.data, other->meta.id.data,
                       dist->meta.id.len) == 0)
    {
        return NGX_OK;
    }

    if (other->base_path.len == dist->base_path.len
        || (!ngx_pt_path_prefix(&other->base_path, &dist->base_path)
            && !ngx_pt_path_prefix(&dist->base_path, &other->base_path)))
    {
        /* equal paths are reported as not unique */
        return NGX_OK;
    }

    p = ngx_pnalloc(ov->ctx->pool, other->name.len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    msg.data = p;
    msg.len = ngx_sprintf(p, "Overlaps with existing distribution \"%V\".",
                          &other->name)
              - p;

    if (ngx_pt_error_add(ov->errs, "base_path", &msg) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DONE;
}

/* moves a unique index entry from old to new */

static ngx_int_t
ngx_pt_admin_index(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *old, ngx_str_t *new, ngx_str_t *id)
{
    if (old && old->len == new->len
        && ngx_strncmp(old->data, new->data, old->len) == 0)
    {
        return NGX_OK;
    }

    if (old && ngx_pt_index_del(ctx->log, txn, db, old) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_pt_index_put(ctx->log, txn, db, new, id);
}

/*
 * The task Pulp clients expect to find behind a 202: a write already done
 * ("completed"), or work the cache manager does ("waiting"); id, when
 * given, gets the task's id.
 */

ngx_int_t
ngx_pt_admin_task(ngx_pt_admin_t *ctx, MDB_txn *txn, const char *name,
    const char *state, ngx_str_t *created, ngx_str_t *href, ngx_str_t *id)
{
    u_char         *buf;
    ngx_str_t      *s;
    ngx_pt_task_t  *task;

    task = ngx_pt_record_new(ctx->pool, &ngx_pt_task_type);
    if (task == NULL
        || ngx_pt_uuid(ctx->pool, &task->meta.id) != NGX_OK
        || ngx_pt_now(ctx->pool, &task->meta.created) != NGX_OK)
    {
        return NGX_ERROR;
    }

    task->meta.updated = task->meta.created;
    task->name.data = (u_char *) name;
    task->name.len = ngx_strlen(name);
    task->state.data = (u_char *) state;
    task->state.len = ngx_strlen(state);

    if (id) {
        *id = task->meta.id;
    }

    task->created = ngx_array_create(ctx->pool, 1, sizeof(ngx_str_t));
    if (task->created == NULL) {
        return NGX_ERROR;
    }

    if (created) {
        s = ngx_array_push(task->created);
        if (s == NULL) {
            return NGX_ERROR;
        }

        *s = *created;
    }

    /*
     * What it held, as Pulp records it: the object it wrote, or for a new
     * one (and the store's own tasks) the collection, exclusively
     */

    task->reserved = ngx_array_create(ctx->pool, 1, sizeof(ngx_str_t));
    if (task->reserved == NULL) {
        return NGX_ERROR;
    }

    s = ngx_array_push(task->reserved);
    buf = ngx_pnalloc(ctx->pool, NGX_PT_HREF_LEN);
    if (s == NULL || buf == NULL) {
        return NGX_ERROR;
    }

    if (ctx->id.len && ctx->type) {
        ngx_pt_record_href(ctx->type, &ctx->id, buf, s);

    } else {
        s->data = buf;
        s->len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s", ctx->res->path) - buf;
    }

    if (ngx_pt_record_save(ctx->pool, ctx->log, txn, &ngx_pt_task_type, task)
        != NGX_OK
        || ngx_pt_admin_tasks_trim(ctx, txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(ctx->pool, NGX_PT_HREF_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_record_href(&ngx_pt_task_type, &task->meta.id, buf, href);

    return NGX_OK;
}


/*
 * Tasks are records of writes already done: the oldest go, in the write's
 * transaction, once NGX_PT_TASKS_TRIM more than NGX_PT_TASKS_KEEP exist.
 */

static ngx_int_t
ngx_pt_admin_tasks_trim(ngx_pt_admin_t *ctx, MDB_txn *txn)
{
    size_t               n;
    ngx_uint_t           i;
    ngx_keyval_t        *kv;
    ngx_pt_task_walk_t   tw;

    if (ngx_pt_record_count(ctx->log, txn, &ngx_pt_task_type, &n) != NGX_OK) {
        return NGX_ERROR;
    }

    if (n < NGX_PT_TASKS_KEEP + NGX_PT_TASKS_TRIM) {
        return NGX_OK;
    }

    tw.pool = ctx->pool;
    tw.tasks = ngx_array_create(ctx->pool, n, sizeof(ngx_keyval_t));

    if (tw.tasks == NULL
        || ngx_pt_record_each(NULL, ctx->log, txn, &ngx_pt_task_type,
                              ngx_pt_admin_task_seen, &tw) != NGX_OK)
    {
        return NGX_ERROR;
    }

    kv = tw.tasks->elts;

    ngx_qsort(kv, tw.tasks->nelts, sizeof(ngx_keyval_t),
              ngx_pt_admin_task_cmp);

    for (i = 0; i + NGX_PT_TASKS_KEEP < tw.tasks->nelts; i++) {
        if (ngx_pt_record_delete(ctx->log, txn, &ngx_pt_task_type,
                                 &kv[i].value) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->log, 0,
                   "pullthrough admin: %ui old tasks removed", i);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_admin_task_seen(void *data, void *rec)
{
    ngx_pt_task_walk_t *tw = data;

    ngx_keyval_t   *kv;
    ngx_pt_meta_t  *meta = rec;

    kv = ngx_array_push(tw->tasks);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    kv->key.len = meta->created.len;
    kv->key.data = ngx_pstrdup(tw->pool, &meta->created);
    kv->value.len = meta->id.len;
    kv->value.data = ngx_pstrdup(tw->pool, &meta->id);

    return (kv->key.data && kv->value.data) ? NGX_OK : NGX_ERROR;
}


/* oldest first: the timestamps are ISO 8601 in UTC */

static int ngx_libc_cdecl
ngx_pt_admin_task_cmp(const void *a, const void *b)
{
    const ngx_keyval_t *x = a, *y = b;

    ngx_int_t  rc;

    rc = ngx_memn2cmp(x->key.data, y->key.data, x->key.len, y->key.len);

    return rc < 0 ? -1 : rc > 0;
}
