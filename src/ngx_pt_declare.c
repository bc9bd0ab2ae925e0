
/*
 * ngx_pullthrough: configuration as code. "pullthrough_config" names a
 * JSON file of remotes and pull-through distributions in the admin API's
 * own field names. While nginx reads its configuration (start, reload,
 * nginx -t), the file is applied to the store in one write transaction,
 * each object through the admin API's own input, checks and indexes
 * (ngx_pt_admin_save): one that the file names is created, or replaced by
 * what the file says if that differs; one that an earlier file declared
 * and this one no longer lists is deleted (but for a remote that the
 * API's distributions still use: kept, with a warning). Objects made
 * through the API are left alone unless the file names them. The ids the file declared
 * are kept in the store's meta database. Any error fails the whole file:
 * nothing is written, "nginx -t" fails and a reload keeps what runs.
 * A string field may come from a file: "password_file" for "password".
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


#define NGX_PT_DECLARE_MAX_FILE   (16 * 1024 * 1024)
#define NGX_PT_DECLARE_MAX_VALUE  (1024 * 1024)


typedef struct {
    ngx_conf_t                 *cf;
    ngx_str_t                  *file;
    MDB_txn                    *txn;
    ngx_pt_admin_t              ctx;
    ngx_array_t                 ids[2];      /* ngx_str_t: remotes, dists */
    ngx_array_t                 names;       /* ngx_str_t: seen, with a
                                                kind's first byte */
    ngx_uint_t                  failed;
    ngx_uint_t                  created;
    ngx_uint_t                  updated;
    ngx_uint_t                  removed;
} ngx_pt_declare_t;


/* the two kinds of object, in the order they are applied */
static const char  *ngx_pt_declare_keys[] = { "remotes", "distributions" };
static const char  *ngx_pt_declare_kinds[] = { "remote", "distribution" };

static ngx_str_t  ngx_pt_declared_key = ngx_string("declared");


static ngx_int_t ngx_pt_declare_read(ngx_pt_declare_t *d, yajl_val *doc);
static ngx_int_t ngx_pt_declare_list(ngx_pt_declare_t *d, ngx_uint_t kind,
    yajl_val list);
static ngx_int_t ngx_pt_declare_one(ngx_pt_declare_t *d, ngx_uint_t kind,
    yajl_val obj);
static ngx_int_t ngx_pt_declare_body(ngx_pt_declare_t *d, ngx_uint_t kind,
    yajl_val obj, yajl_val *body);
static ngx_int_t ngx_pt_declare_value_file(ngx_pt_declare_t *d,
    const char *name, yajl_val v, ngx_str_t *out);
static ngx_int_t ngx_pt_declare_remote_href(ngx_pt_declare_t *d,
    yajl_val v, ngx_str_t *href);
static ngx_int_t ngx_pt_declare_prune(ngx_pt_declare_t *d, ngx_uint_t kind,
    yajl_val before);
static ngx_int_t ngx_pt_declare_record(ngx_pt_declare_t *d);
static ngx_int_t ngx_pt_declare_seen(ngx_pt_declare_t *d, ngx_uint_t kind,
    ngx_str_t *name);
static ngx_int_t ngx_pt_declare_file(ngx_pt_declare_t *d, ngx_str_t *name,
    size_t max, ngx_str_t *out);
static void ngx_pt_declare_use(ngx_pt_declare_t *d, ngx_uint_t kind);
static void ngx_pt_declare_error(ngx_pt_declare_t *d, ngx_uint_t kind,
    ngx_str_t *name, const char *fmt, ...);
static void ngx_pt_declare_kept(ngx_pt_declare_t *d, ngx_uint_t kind,
    ngx_str_t *name);
static void ngx_pt_declare_refused(ngx_pt_declare_t *d, ngx_uint_t kind,
    ngx_str_t *name);
static void ngx_pt_declare_answer(ngx_pt_declare_t *d, ngx_str_t *answer);


ngx_int_t
ngx_pt_declare_apply(ngx_conf_t *cf, ngx_http_pullthrough_main_conf_t *pmcf)
{
    yajl_val          doc, v, before;
    ngx_int_t         rc;
    ngx_str_t         val, err;
    ngx_uint_t        kind, i;
    ngx_pt_declare_t  d;

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_OK;
    }

    ngx_memzero(&d, sizeof(ngx_pt_declare_t));

    d.cf = cf;
    d.file = &pmcf->config;
    d.ctx.pool = cf->temp_pool;
    d.ctx.log = cf->log;
    d.ctx.declared = 1;

    if (ngx_array_init(&d.ids[0], cf->temp_pool, 8, sizeof(ngx_str_t))
        != NGX_OK
        || ngx_array_init(&d.ids[1], cf->temp_pool, 8, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&d.names, cf->temp_pool, 16, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_declare_read(&d, &doc) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_pt_txn_begin(cf->log, 1, &d.txn) != NGX_OK) {
        return NGX_ERROR;
    }

    /* what the file declared last time */

    before = NULL;
    rc = ngx_pt_meta_get(cf->log, d.txn, &ngx_pt_declared_key, &val);

    if (rc == NGX_OK) {
        before = ngx_pt_json_parse(cf->temp_pool, &val, &err);
    }

    if (rc == NGX_ERROR) {
        goto failed;
    }

    for (kind = 0; kind < 2; kind++) {
        v = ngx_pt_json_get(doc, ngx_pt_declare_keys[kind]);

        if (v && ngx_pt_declare_list(&d, kind, v) != NGX_OK) {
            goto failed;
        }
    }

    if (d.failed) {
        goto failed;
    }

    /* distributions go first: a remote in use cannot be deleted */

    for (i = 2; i > 0; i--) {
        if (before && ngx_pt_declare_prune(&d, i - 1, before) != NGX_OK) {
            goto failed;
        }
    }

    if (ngx_pt_declare_record(&d) != NGX_OK) {
        goto failed;
    }

    if (ngx_test_config) {
        ngx_pt_txn_abort(d.txn);

    } else if (ngx_pt_txn_commit(cf->log, d.txn) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_NOTICE, cf->log, 0,
                  "pullthrough_config \"%V\": %ui remote(s), %ui "
                  "distribution(s); %ui created, %ui updated, %ui "
                  "removed%s", d.file, d.ids[0].nelts, d.ids[1].nelts,
                  d.created, d.updated, d.removed,
                  ngx_test_config ? " (checked, not applied)" : "");

    return NGX_OK;

failed:

    ngx_pt_txn_abort(d.txn);
    return NGX_ERROR;
}


/* the file, as a JSON object of "remotes" and "distributions" lists */

static ngx_int_t
ngx_pt_declare_read(ngx_pt_declare_t *d, yajl_val *doc)
{
    size_t      i;
    ngx_str_t   text, err;
    yajl_val    v;

    if (ngx_pt_declare_file(d, d->file, NGX_PT_DECLARE_MAX_FILE, &text)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* as strictly as the admin API reads its bodies (UTF-8 checked) */

    v = ngx_pt_json_parse_input(d->cf->temp_pool, &text, &err);

    if (v == NULL) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": JSON parse error - %V",
                      d->file, &err);
        return NGX_ERROR;
    }

    if (!YAJL_IS_OBJECT(v)) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": an object of "
                      "\"remotes\" and \"distributions\" is expected",
                      d->file);
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.object.len; i++) {
        if ((ngx_strcmp(v->u.object.keys[i], "remotes") != 0
             && ngx_strcmp(v->u.object.keys[i], "distributions") != 0)
            || !YAJL_IS_ARRAY(v->u.object.values[i]))
        {
            ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                          "pullthrough_config \"%V\": \"%s\" is not a "
                          "list of \"remotes\" or \"distributions\"",
                          d->file, v->u.object.keys[i]);
            return NGX_ERROR;
        }
    }

    *doc = v;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_declare_list(ngx_pt_declare_t *d, ngx_uint_t kind, yajl_val list)
{
    size_t  i;

    for (i = 0; i < list->u.array.len; i++) {
        if (ngx_pt_declare_one(d, kind, list->u.array.values[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * One object of the file, by its name: created, replaced, or left as it
 * is. Field errors are logged and the file marked failed; NGX_ERROR only
 * when the store fails.
 */

static ngx_int_t
ngx_pt_declare_one(ngx_pt_declare_t *d, ngx_uint_t kind, yajl_val obj)
{
    void       *old, *rec;
    yajl_val    v, body;
    ngx_int_t   rc;
    ngx_str_t   name, id, *ids;

    v = YAJL_IS_OBJECT(obj) ? ngx_pt_json_get(obj, "name") : NULL;

    if (v == NULL || !YAJL_IS_STRING(v) || v->u.string[0] == '\0') {
        ngx_pt_declare_error(d, kind, NULL, "each %s is an object with a "
                             "\"name\"", ngx_pt_declare_kinds[kind]);
        return NGX_OK;
    }

    name.data = (u_char *) v->u.string;
    name.len = ngx_strlen(v->u.string);

    rc = ngx_pt_declare_seen(d, kind, &name);

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    ngx_pt_declare_use(d, kind);

    rc = ngx_pt_declare_body(d, kind, obj, &body);

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    /* the object of that name, if the store has one */

    old = NULL;
    rc = ngx_pt_index_get(d->ctx.log, d->txn,
                          kind ? NGX_PT_DB_DIST_NAMES
                               : NGX_PT_DB_REMOTE_NAMES,
                          &name, &id);

    if (rc == NGX_OK) {
        rc = ngx_pt_record_load(d->ctx.pool, d->ctx.log, d->txn, d->ctx.type,
                                &id, &old);
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    rc = ngx_pt_admin_save(&d->ctx, d->txn, body, old,
                           old ? NGX_PT_INPUT_REPLACE : NGX_PT_INPUT_CREATE,
                           &rec);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_pt_declare_refused(d, kind, &name);
        return NGX_OK;
    }

    if (rc == NGX_OK) {
        if (old) {
            d->updated++;
        } else {
            d->created++;
        }
    }

    ids = ngx_array_push(&d->ids[kind]);
    if (ids == NULL) {
        return NGX_ERROR;
    }

    *ids = ((ngx_pt_meta_t *) rec)->id;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, d->ctx.log, 0,
                   "pullthrough_config: %s \"%V\": %s",
                   ngx_pt_declare_kinds[kind], &name,
                   rc == NGX_DONE ? "unchanged" : old ? "updated" : "created");

    return NGX_OK;
}


/*
 * What the admin API would be sent: the object, with "<field>_file"
 * read into "<field>" and a distribution's remote named by its name.
 * NGX_DECLINED: an error was logged.
 */

static ngx_int_t
ngx_pt_declare_body(ngx_pt_declare_t *d, ngx_uint_t kind, yajl_val obj,
    yajl_val *body)
{
    size_t       i, len;
    yajl_gen     g;
    yajl_val     v;
    ngx_str_t    name, value, text, err;
    ngx_int_t    rc;
    const char  *key;
    u_char       buf[64];

    name.data = (u_char *) ngx_pt_json_get(obj, "name")->u.string;
    name.len = ngx_strlen(name.data);

    g = ngx_pt_json_gen(d->ctx.pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    for (i = 0; i < obj->u.object.len; i++) {
        key = obj->u.object.keys[i];
        v = obj->u.object.values[i];
        len = ngx_strlen(key);

        if (len > 5 && len - 5 < sizeof(buf)
            && ngx_strcmp(key + len - 5, "_file") == 0)
        {
            ngx_cpystrn(buf, (u_char *) key, len - 5 + 1);

            if (ngx_pt_json_get(obj, (char *) buf)) {
                ngx_pt_declare_error(d, kind, &name, "\"%s\" and \"%s\" are "
                                     "both given", buf, key);
                return NGX_DECLINED;
            }

            rc = ngx_pt_declare_value_file(d, key, v, &value);

            if (rc != NGX_OK) {
                return rc;
            }

            ngx_pt_json_key(g, (char *) buf);
            ngx_pt_json_str(g, &value);
            continue;
        }

        ngx_pt_json_key(g, key);

        if (kind == 1 && ngx_strcmp(key, "remote") == 0) {
            rc = ngx_pt_declare_remote_href(d, v, &value);

            if (rc == NGX_OK) {
                ngx_pt_json_str(g, &value);
                continue;
            }

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_ABORT) {
                return NGX_DECLINED;
            }

            /* NGX_DECLINED: not a name, the admin API judges it */
        }

        ngx_pt_json_value(g, v);
    }

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, d->ctx.pool, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    /* what files gave is checked as the rest of the file was */

    *body = ngx_pt_json_parse_input(d->ctx.pool, &text, &err);

    if (*body == NULL) {
        if (err.len == 0) {
            return NGX_ERROR;
        }

        ngx_pt_declare_error(d, kind, &name, "a value read from a file: %V",
                             &err);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* "<field>_file": the file's text, without a trailing newline */

static ngx_int_t
ngx_pt_declare_value_file(ngx_pt_declare_t *d, const char *name, yajl_val v,
    ngx_str_t *out)
{
    ngx_str_t  path, given;

    if (!YAJL_IS_STRING(v) || v->u.string[0] == '\0') {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": \"%s\" is not a file name",
                      d->file, name);
        d->failed = 1;
        return NGX_DECLINED;
    }

    given.data = (u_char *) v->u.string;
    given.len = ngx_strlen(v->u.string);

    path.len = given.len;
    path.data = ngx_pstrdup(d->ctx.pool, &given);

    if (path.data == NULL
        || ngx_conf_full_name(d->cf->cycle, &path, 1) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_declare_file(d, &path, NGX_PT_DECLARE_MAX_VALUE, out)
        != NGX_OK)
    {
        d->failed = 1;
        return NGX_DECLINED;
    }

    if (out->len && out->data[out->len - 1] == '\n') {
        out->len--;

        if (out->len && out->data[out->len - 1] == '\r') {
            out->len--;
        }
    }

    return NGX_OK;
}


/*
 * A distribution's "remote": a remote's name is its href. NGX_DECLINED:
 * the value is not a name (an href, a URL, not a string); NGX_ABORT: the
 * name of no remote, logged.
 */

static ngx_int_t
ngx_pt_declare_remote_href(ngx_pt_declare_t *d, yajl_val v, ngx_str_t *href)
{
    u_char     *buf;
    ngx_int_t   rc;
    ngx_str_t   name, id;

    if (!YAJL_IS_STRING(v) || v->u.string[0] == '/'
        || ngx_strstr(v->u.string, "://"))
    {
        return NGX_DECLINED;
    }

    name.data = (u_char *) v->u.string;
    name.len = ngx_strlen(v->u.string);

    rc = ngx_pt_index_get(d->ctx.log, d->txn, NGX_PT_DB_REMOTE_NAMES, &name,
                          &id);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": remote \"%V\" is neither "
                      "in the file nor in the store", d->file, &name);
        d->failed = 1;
        return NGX_ABORT;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    buf = ngx_pnalloc(d->ctx.pool, NGX_PT_HREF_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_record_href(&ngx_pt_remote_type, &id, buf, href);

    return NGX_OK;
}


/* what an earlier file declared and this one does not: deleted */

static ngx_int_t
ngx_pt_declare_prune(ngx_pt_declare_t *d, ngx_uint_t kind, yajl_val before)
{
    void       *old;
    size_t      i;
    yajl_val    list, v;
    ngx_int_t   rc;
    ngx_str_t   id, *ids, name;
    ngx_uint_t  j;

    list = ngx_pt_json_get(before, ngx_pt_declare_keys[kind]);

    if (list == NULL || !YAJL_IS_ARRAY(list)) {
        return NGX_OK;
    }

    ngx_pt_declare_use(d, kind);

    ids = d->ids[kind].elts;

    for (i = 0; i < list->u.array.len; i++) {
        v = list->u.array.values[i];

        if (!YAJL_IS_STRING(v)) {
            continue;
        }

        id.data = (u_char *) v->u.string;
        id.len = ngx_strlen(v->u.string);

        for (j = 0; j < d->ids[kind].nelts; j++) {
            if (ids[j].len == id.len
                && ngx_strncmp(ids[j].data, id.data, id.len) == 0)
            {
                break;
            }
        }

        if (j < d->ids[kind].nelts) {
            continue;
        }

        rc = ngx_pt_record_load(d->ctx.pool, d->ctx.log, d->txn, d->ctx.type,
                                &id, &old);

        if (rc == NGX_DECLINED) {
            /* deleted through the API meanwhile */
            continue;
        }

        if (rc == NGX_OK) {
            rc = d->ctx.res->remove(&d->ctx, d->txn, old);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        /* remotes and pull-through distributions share the layout's
         * first field, the name */

        name = ((ngx_pt_remote_t *) old)->name;

        if (rc == NGX_DECLINED) {
            /* a remote that the API's distributions still use: kept, and
             * the API's from now on */
            ngx_pt_declare_kept(d, kind, &name);
            continue;
        }

        d->removed++;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, d->ctx.log, 0,
                       "pullthrough_config: %s \"%V\": removed",
                       ngx_pt_declare_kinds[kind], &name);
    }

    return NGX_OK;
}


/* the ids this file declared, for the next one to compare */

static ngx_int_t
ngx_pt_declare_record(ngx_pt_declare_t *d)
{
    yajl_gen    g;
    ngx_str_t   text, *ids;
    ngx_uint_t  kind, i;

    g = ngx_pt_json_gen(d->ctx.pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    for (kind = 0; kind < 2; kind++) {
        ngx_pt_json_key(g, ngx_pt_declare_keys[kind]);
        ngx_pt_json_array_open(g);

        ids = d->ids[kind].elts;

        for (i = 0; i < d->ids[kind].nelts; i++) {
            ngx_pt_json_str(g, &ids[i]);
        }

        ngx_pt_json_array_close(g);
    }

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, d->ctx.pool, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_meta_put(d->ctx.log, d->txn, &ngx_pt_declared_key, &text);
}


/* a name listed twice is an error: NGX_DECLINED, logged */

static ngx_int_t
ngx_pt_declare_seen(ngx_pt_declare_t *d, ngx_uint_t kind, ngx_str_t *name)
{
    ngx_str_t   *s;
    ngx_uint_t   i;

    s = d->names.elts;

    for (i = 0; i < d->names.nelts; i++) {
        if (s[i].len == name->len + 1 && s[i].data[0] == (u_char) kind
            && ngx_strncmp(s[i].data + 1, name->data, name->len) == 0)
        {
            ngx_pt_declare_error(d, kind, name, "listed twice");
            return NGX_DECLINED;
        }
    }

    s = ngx_array_push(&d->names);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->len = name->len + 1;
    s->data = ngx_pnalloc(d->ctx.pool, s->len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    s->data[0] = (u_char) kind;
    ngx_memcpy(s->data + 1, name->data, name->len);

    return NGX_OK;
}


/* a file read whole, at most max bytes; errors are logged */

static ngx_int_t
ngx_pt_declare_file(ngx_pt_declare_t *d, ngx_str_t *name, size_t max,
    ngx_str_t *out)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, ngx_errno,
                      ngx_fd_info_n " \"%V\" failed", name);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size < 0 || (size_t) size > max) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config: \"%V\" is larger than %uz bytes",
                      name, max);
        goto done;
    }

    out->data = ngx_pnalloc(d->ctx.pool, (size_t) size + 1);
    if (out->data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, out->data, (size_t) size);

    if (n == -1 || n != size) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, ngx_errno,
                      ngx_read_fd_n " \"%V\" failed", name);
        goto done;
    }

    out->len = (size_t) n;
    out->data[n] = '\0';
    rc = NGX_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, d->cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", name);
    }

    return rc;
}


/* the admin API's resource of a kind, with a fresh answer for errors */

static void
ngx_pt_declare_use(ngx_pt_declare_t *d, ngx_uint_t kind)
{
    ngx_pt_type_t            *type;
    ngx_pt_admin_resource_t  *res;

    type = kind ? &ngx_pt_pt_dist_type : &ngx_pt_remote_type;

    for (res = ngx_pt_admin_resources; res->path; res++) {
        if (res->type == type && res->check) {
            break;
        }
    }

    d->ctx.res = res;
    d->ctx.type = type;
    d->ctx.status = 0;
    d->ctx.g = ngx_pt_json_gen(d->ctx.pool);
}


static void
ngx_pt_declare_error(ngx_pt_declare_t *d, ngx_uint_t kind, ngx_str_t *name,
    const char *fmt, ...)
{
    u_char    buf[NGX_MAX_ERROR_STR], *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    if (name) {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": %s \"%V\": %*s", d->file,
                      ngx_pt_declare_kinds[kind], name, p - buf, buf);
    } else {
        ngx_log_error(NGX_LOG_EMERG, d->cf->log, 0,
                      "pullthrough_config \"%V\": %*s", d->file, p - buf,
                      buf);
    }

    d->failed = 1;
}


/* a deletion that the admin API refused, not held against the file */

static void
ngx_pt_declare_kept(ngx_pt_declare_t *d, ngx_uint_t kind, ngx_str_t *name)
{
    ngx_str_t  answer;

    ngx_pt_declare_answer(d, &answer);

    ngx_log_error(NGX_LOG_WARN, d->cf->log, 0,
                  "pullthrough_config \"%V\": %s \"%V\", no longer in the "
                  "file, is kept: %V", d->file, ngx_pt_declare_kinds[kind],
                  name, &answer);
}


static void
ngx_pt_declare_refused(ngx_pt_declare_t *d, ngx_uint_t kind,
    ngx_str_t *name)
{
    ngx_str_t  answer;

    ngx_pt_declare_answer(d, &answer);
    ngx_pt_declare_error(d, kind, name, "%V", &answer);
}


/*
 * What the admin API answered, as it would have (field errors, detail);
 * the next object's go in an answer of their own.
 */

static void
ngx_pt_declare_answer(ngx_pt_declare_t *d, ngx_str_t *answer)
{
    if (d->ctx.g == NULL
        || ngx_pt_json_result(d->ctx.g, d->ctx.pool, answer) != NGX_OK)
    {
        ngx_str_set(answer, "refused");
    }

    d->ctx.g = ngx_pt_json_gen(d->ctx.pool);
}
