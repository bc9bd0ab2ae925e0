
/*
 * ngx_pullthrough: the admin API's lists and its query string. The query
 * string is decoded once, into limit, offset, ordering and the other
 * parameters; lists of records take their filters (name, base_path, with
 * Django's __contains, __icontains, __startswith and __in; Pulp's
 * pulp_label_select) and ordering from it, and answer with Pulp's pages:
 * count, next, previous, results.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


/* one list filter: name=, name__contains=, ... */
typedef struct {
    size_t                      offset;      /* of the ngx_str_t */
    ngx_pt_field_t             *field;
    ngx_uint_t                  op;
    ngx_uint_t                  hold;        /* NGX_PT_HOLD_* */
    ngx_str_t                   value;
} ngx_pt_filter_t;

/* pulp_label_select=: not a suffix, after those of ngx_pt_admin_filter_ops */
#define NGX_PT_OP_LABELS       5

/* a term of pulp_label_select */
#define NGX_PT_LABEL_EXISTS    0        /* key */
#define NGX_PT_LABEL_ABSENT    1        /* !key */
#define NGX_PT_LABEL_EQ        2        /* key=value */
#define NGX_PT_LABEL_NE        3        /* key!=value */
#define NGX_PT_LABEL_CONTAINS  4        /* key~value, any case */

/* how a task held what its reserved_resources name */
#define NGX_PT_HOLD_ANY        0
#define NGX_PT_HOLD_EXCLUSIVE  1
#define NGX_PT_HOLD_SHARED     2



/* a record that matched, as much of it as sorting needs */
typedef struct {
    ngx_str_t                   key;         /* the ordering field */
    ngx_str_t                   id;
    ngx_pt_type_t              *type;
} ngx_pt_list_item_t;


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_pt_type_t              *type;        /* of the records walked */
    ngx_array_t                 items;       /* ngx_pt_list_item_t */
    ngx_array_t                *filters;     /* ngx_pt_filter_t */
    ngx_int_t                   status;
} ngx_pt_list_t;


static ngx_int_t ngx_pt_admin_list_collect(void *data, void *rec);
static ngx_int_t ngx_pt_admin_list_end(ngx_pt_admin_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_pt_admin_list_indexed(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_array_t *filters);
static ngx_uint_t ngx_pt_admin_unique_index(ngx_pt_type_t *type,
    ngx_pt_field_t *f);
static ngx_int_t ngx_pt_admin_filters(ngx_pt_admin_t *ctx,
    ngx_array_t *filters);
static ngx_pt_field_t *ngx_pt_admin_filter_field(ngx_pt_admin_t *ctx,
    ngx_str_t *name);
static ngx_int_t ngx_pt_admin_label_filter(ngx_pt_admin_t *ctx,
    ngx_array_t *filters, ngx_str_t *value);
static ngx_int_t ngx_pt_admin_label_term(u_char *p, u_char *last,
    ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_pt_admin_label_match(ngx_str_t *select,
    ngx_array_t *labels);
static ngx_int_t ngx_pt_admin_filter_match(ngx_pt_filter_t *flt, void *rec);
static ngx_int_t ngx_pt_admin_filter_match_list(ngx_pt_filter_t *flt,
    ngx_array_t *list);
static ngx_int_t ngx_pt_admin_ordering(ngx_pt_admin_t *ctx);
static int ngx_libc_cdecl ngx_pt_admin_cmp(const void *one, const void *two);
static ngx_int_t ngx_pt_admin_page_link(ngx_pt_admin_t *ctx, ngx_int_t limit,
    ngx_int_t offset);


/* a filter's suffix, in the order of NGX_PT_OP_* */
const char  *ngx_pt_admin_filter_ops[] = {
    "", "__contains", "__icontains", "__startswith", "__in", NULL
};

/* what every list of records is ordered by, besides its string filters */
const char  *ngx_pt_admin_orderings[] = {
    "pulp_created", "pulp_last_updated", NULL
};


/* list ordering, for the qsort() comparator */
static size_t      ngx_pt_order_offset;
static ngx_int_t   ngx_pt_order_desc;


/* name=value pairs; values are form-encoded ("+" is a space) */

ngx_int_t
ngx_pt_admin_query_parse(ngx_pt_admin_t *ctx)
{
    u_char                *p, *q, *last, *eq, *end, *dst;
    ngx_int_t              n;
    ngx_str_t              name, value;
    ngx_keyval_t          *kv;
    ngx_pt_admin_query_t  *query;

    query = &ctx->query;

    query->limit = NGX_PT_DEFAULT_LIMIT;
    query->offset = 0;
    ngx_str_null(&query->ordering);

    if (ngx_array_init(&query->params, ctx->pool, 4, sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ctx->r->args.data;
    last = p + ctx->r->args.len;

    for ( /* void */ ; p < last; p = end + 1) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        eq = ngx_strlchr(p, end, '=');
        if (eq == NULL) {
            continue;
        }

        name.data = p;
        name.len = eq - p;

        value.data = ngx_pnalloc(ctx->pool, end - eq);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        for (q = eq + 1, dst = value.data; q < end; q++) {
            *dst++ = (*q == '+') ? ' ' : *q;
        }

        q = value.data;
        dst = value.data;
        ngx_unescape_uri(&dst, &q, end - eq - 1, 0);
        value.len = dst - value.data;

        if (name.len == 5 && ngx_strncmp(name.data, "limit", 5) == 0) {
            n = ngx_atoi(value.data, value.len);
            if (n > 0) {
                /* a page costs the records it holds: at most this many */
                query->limit = ngx_min(n, NGX_PT_MAX_LIMIT);
            }
            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "offset", 6) == 0) {
            n = ngx_atoi(value.data, value.len);
            if (n > 0) {
                query->offset = n;
            }
            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "ordering", 8) == 0) {
            query->ordering = value;
            continue;
        }

        kv = ngx_array_push(&query->params);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        kv->key = name;
        kv->value = value;
    }

    return NGX_OK;
}


/* the first value of a parameter; empty when there is none */

void
ngx_pt_admin_query_get(ngx_pt_admin_t *ctx, const char *name,
    ngx_str_t *value)
{
    size_t         len;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    len = ngx_strlen(name);
    kv = ctx->query.params.elts;

    for (i = 0; i < ctx->query.params.nelts; i++) {
        if (kv[i].key.len == len
            && ngx_strncmp(kv[i].key.data, name, len) == 0)
        {
            *value = kv[i].value;
            return;
        }
    }

    ngx_str_null(value);
}


/* lists */

ngx_int_t
ngx_pt_admin_list(ngx_pt_admin_t *ctx)
{
    void                *rec;
    MDB_txn             *txn;
    ngx_int_t            limit, offset, rc, i;
    ngx_array_t          filters;
    ngx_pt_list_t        list;
    ngx_pt_list_item_t  *items;

    limit = ctx->query.limit;
    offset = ctx->query.offset;

    if (ngx_array_init(&filters, ctx->pool, 4, sizeof(ngx_pt_filter_t))
        != NGX_OK
        || ngx_array_init(&list.items, ctx->pool, 16,
                          sizeof(ngx_pt_list_item_t)) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_pt_admin_filters(ctx, &filters);

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_ordering(ctx);
    }

    if (rc != NGX_OK) {
        /* NGX_DECLINED: a 400 is in ctx */
        return rc == NGX_DECLINED ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list.ctx = ctx;
    list.filters = &filters;
    list.status = NGX_OK;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    /* most lists of one type are answered from an index, in the page's
     * own cost */

    rc = ctx->res->also ? NGX_DECLINED
                        : ngx_pt_admin_list_indexed(ctx, txn, &filters);

    if (rc != NGX_DECLINED) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_list_end(ctx, rc);
    }

    /*
     * Each record is decoded in a pool of its own and only its sort key
     * and id are kept; the page's records are read again to be rendered.
     * A list of two types (Pulp's /distributions/) walks both: their
     * records share a layout, so the filters of the first fit the second.
     */

    list.type = ctx->type;

    rc = ngx_pt_record_each(NULL, ctx->log, txn, list.type,
                            ngx_pt_admin_list_collect, &list);

    if (rc == NGX_OK && ctx->res->also) {
        list.type = ctx->res->also;
        rc = ngx_pt_record_each(NULL, ctx->log, txn, list.type,
                                ngx_pt_admin_list_collect, &list);
    }

    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_store_error(ctx);
    }

    items = list.items.elts;

    ngx_qsort(items, list.items.nelts, sizeof(ngx_pt_list_item_t),
              ngx_pt_admin_cmp);

    rc = ngx_pt_admin_page(ctx, list.items.nelts);

    for (i = offset;
         rc == NGX_OK && i < offset + limit
         && i < (ngx_int_t) list.items.nelts;
         i++)
    {
        ctx->type = items[i].type;

        rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, ctx->type,
                                &items[i].id, &rec);

        if (rc == NGX_OK) {
            rc = ngx_pt_admin_render(ctx, txn, rec);
        }
    }

    ctx->type = ctx->res->type;

    ngx_pt_txn_abort(txn);

    return ngx_pt_admin_list_end(ctx, rc);
}


static ngx_int_t
ngx_pt_admin_list_end(ngx_pt_admin_t *ctx, ngx_int_t rc)
{
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


/*
 * The lists an index answers: in the order of creation without a filter
 * (the count is the database's, the page a cursor walk), and name= or
 * base_path= through the unique indexes. NGX_DECLINED: the others, which
 * walk every record of the type.
 */

static ngx_int_t
ngx_pt_admin_list_indexed(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_array_t *filters)
{
    void             *rec;
    size_t            count;
    ngx_int_t         rc;
    ngx_str_t        *ids, id;
    ngx_uint_t        i, db;
    ngx_array_t       page;
    ngx_pt_filter_t  *flt;

    if (ngx_array_init(&page, ctx->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    if (filters->nelts == 0) {
        if (ngx_pt_order_offset != offsetof(ngx_pt_meta_t, created)) {
            return NGX_DECLINED;
        }

        if (ngx_pt_record_count(ctx->log, txn, ctx->type, &count) != NGX_OK
            || ngx_pt_records_page(ctx->pool, ctx->log, txn, ctx->type,
                                   ngx_pt_order_desc, ctx->query.offset,
                                   ctx->query.limit, &page)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        flt = filters->elts;

        if (filters->nelts != 1 || flt->op != NGX_PT_OP_EXACT) {
            return NGX_DECLINED;
        }

        db = ngx_pt_admin_unique_index(ctx->type, flt->field);
        if (db == 0) {
            return NGX_DECLINED;
        }

        count = 0;
        rc = ngx_pt_index_get(ctx->log, txn, db, &flt->value, &id);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            /* both kinds of distribution share the name and path indexes */
            rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, ctx->type, &id,
                                    &rec);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_OK && ngx_pt_admin_filter_match(flt, rec)) {
                count = 1;

                if (ctx->query.offset == 0 && ctx->query.limit > 0) {
                    ids = ngx_array_push(&page);
                    if (ids == NULL) {
                        return NGX_ERROR;
                    }

                    *ids = ((ngx_pt_meta_t *) rec)->id;
                }
            }
        }
    }

    rc = ngx_pt_admin_page(ctx, count);

    ids = page.elts;

    for (i = 0; rc == NGX_OK && i < page.nelts; i++) {
        rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, ctx->type, &ids[i],
                                &rec);

        if (rc == NGX_OK) {
            rc = ngx_pt_admin_render(ctx, txn, rec);

        } else if (rc == NGX_DECLINED) {
            rc = NGX_OK;
        }
    }

    return rc;
}


/* the unique index of a field of a type, 0: none */

static ngx_uint_t
ngx_pt_admin_unique_index(ngx_pt_type_t *type, ngx_pt_field_t *f)
{
    if (ngx_strcmp(f->name, "name") == 0) {
        return type == &ngx_pt_remote_type ? NGX_PT_DB_REMOTE_NAMES
               : type == &ngx_pt_repo_type ? NGX_PT_DB_REPO_NAMES
               : type == &ngx_pt_pt_dist_type ? NGX_PT_DB_DIST_NAMES
               : 0;
    }

    if (ngx_strcmp(f->name, "base_path") == 0
        && (type == &ngx_pt_pt_dist_type || type == &ngx_pt_dist_type))
    {
        return NGX_PT_DB_DIST_PATHS;
    }

    return 0;
}

static ngx_int_t
ngx_pt_admin_list_collect(void *data, void *rec)
{
    ngx_pt_list_t *list = data;

    ngx_str_t            *key;
    ngx_uint_t            i;
    ngx_pt_filter_t      *flt;
    ngx_pt_list_item_t   *item;

    flt = list->filters->elts;
    for (i = 0; i < list->filters->nelts; i++) {
        if (!ngx_pt_admin_filter_match(&flt[i], rec)) {
            return NGX_OK;
        }
    }

    /* copies: rec goes with its pool after this */

    key = (ngx_str_t *) ((u_char *) rec + ngx_pt_order_offset);

    item = ngx_array_push(&list->items);
    if (item == NULL) {
        return NGX_ERROR;
    }

    item->type = list->type;
    item->key.len = key->len;
    item->key.data = ngx_pstrdup(list->ctx->pool, key);
    item->id.len = ((ngx_pt_meta_t *) rec)->id.len;
    item->id.data = ngx_pstrdup(list->ctx->pool, &((ngx_pt_meta_t *) rec)->id);

    if ((item->key.data == NULL && key->len) || item->id.data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the parameters that filter: <field>[__<op>]=value */

static ngx_int_t
ngx_pt_admin_filters(ngx_pt_admin_t *ctx, ngx_array_t *filters)
{
    size_t            len;
    ngx_int_t         rc;
    ngx_str_t         name;
    ngx_uint_t        i, n, hold;
    ngx_keyval_t     *kv;
    ngx_pt_field_t   *f;
    ngx_pt_filter_t  *flt;

    kv = ctx->query.params.elts;

    for (i = 0; i < ctx->query.params.nelts; i++) {

        if (kv[i].key.len == 17
            && ngx_strncmp(kv[i].key.data, "pulp_label_select", 17) == 0)
        {
            rc = ngx_pt_admin_label_filter(ctx, filters, &kv[i].value);
            if (rc != NGX_OK) {
                return rc;
            }

            continue;
        }

        for (n = 0; ngx_pt_admin_filter_ops[n]; n++) {
            len = ngx_strlen(ngx_pt_admin_filter_ops[n]);

            if (kv[i].key.len <= len
                || ngx_strncmp(kv[i].key.data + kv[i].key.len - len,
                               ngx_pt_admin_filter_ops[n], len) != 0)
            {
                continue;
            }

            name.data = kv[i].key.data;
            name.len = kv[i].key.len - len;

            /* Pulp's exclusive_resources and shared_resources: the
             * reserved ones, held one way */

            hold = NGX_PT_HOLD_ANY;

            if (name.len == 19
                && ngx_strncmp(name.data, "exclusive_resources", 19) == 0)
            {
                hold = NGX_PT_HOLD_EXCLUSIVE;

            } else if (name.len == 16
                       && ngx_strncmp(name.data, "shared_resources", 16) == 0)
            {
                hold = NGX_PT_HOLD_SHARED;
            }

            if (hold != NGX_PT_HOLD_ANY) {
                ngx_str_set(&name, "reserved_resources");
            }

            f = ngx_pt_admin_filter_field(ctx, &name);
            if (f == NULL) {
                continue;
            }

            flt = ngx_array_push(filters);
            if (flt == NULL) {
                return NGX_ERROR;
            }

            flt->offset = f->offset;
            flt->field = f;
            flt->op = n;    /* NGX_PT_OP_*, in the order of the suffixes */
            flt->hold = hold;
            flt->value = kv[i].value;
            break;
        }
    }

    return NGX_OK;
}


/*
 * pulp_label_select=<term>[,<term>...], each term one of key, !key,
 * key=value, key!=value, key~value; all must hold. On a type without
 * labels it is ignored, as other unknown parameters are. NGX_DECLINED:
 * a 400 is in ctx.
 */

static ngx_int_t
ngx_pt_admin_label_filter(ngx_pt_admin_t *ctx, ngx_array_t *filters,
    ngx_str_t *value)
{
    u_char           *p, *c, *last;
    ngx_str_t         key, val;
    ngx_pt_field_t   *f;
    ngx_pt_filter_t  *flt;

    for (f = ctx->type->fields; f->name; f++) {
        if (f->type == NGX_PT_T_LABELS) {
            break;
        }
    }

    if (f->name == NULL) {
        return NGX_OK;
    }

    last = value->data + value->len;

    for (c = value->data; c <= last; c = p + 1) {
        p = ngx_strlchr(c, last, ',');
        if (p == NULL) {
            p = last;
        }

        if (ngx_pt_admin_label_term(c, p, &key, &val) == NGX_ERROR) {
            (void) ngx_pt_admin_field_error(ctx, "pulp_label_select",
                                            "Invalid label select: each "
                                            "term is key, !key, key=value, "
                                            "key!=value or key~value.");
            return NGX_DECLINED;
        }
    }

    flt = ngx_array_push(filters);
    if (flt == NULL) {
        return NGX_ERROR;
    }

    flt->offset = f->offset;
    flt->field = f;
    flt->op = NGX_PT_OP_LABELS;
    flt->hold = NGX_PT_HOLD_ANY;
    flt->value = *value;

    return NGX_OK;
}


/* a term, between p and last: its NGX_PT_LABEL_*, or NGX_ERROR */

static ngx_int_t
ngx_pt_admin_label_term(u_char *p, u_char *last, ngx_str_t *key,
    ngx_str_t *value)
{
    u_char     *op;
    ngx_int_t   kind;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    ngx_str_null(value);

    if (p < last && *p == '!') {
        key->data = p + 1;
        key->len = last - p - 1;

        return (key->len == 0 || ngx_strlchr(key->data, last, '=')
                || ngx_strlchr(key->data, last, '~'))
               ? NGX_ERROR : NGX_PT_LABEL_ABSENT;
    }

    for (op = p; op < last && *op != '=' && *op != '~' && *op != '!'; op++) {
        /* void */
    }

    key->data = p;
    key->len = op - p;

    if (key->len == 0) {
        return NGX_ERROR;
    }

    if (op == last) {
        return NGX_PT_LABEL_EXISTS;
    }

    if (*op == '!') {
        if (op + 1 == last || op[1] != '=') {
            return NGX_ERROR;
        }

        kind = NGX_PT_LABEL_NE;
        op++;

    } else {
        kind = (*op == '=') ? NGX_PT_LABEL_EQ : NGX_PT_LABEL_CONTAINS;
    }

    value->data = op + 1;
    value->len = last - op - 1;

    return kind;
}


static ngx_int_t
ngx_pt_admin_label_match(ngx_str_t *select, ngx_array_t *labels)
{
    u_char        *p, *c, *last;
    ngx_int_t      kind;
    ngx_str_t      key, value;
    ngx_uint_t     i, n;
    ngx_keyval_t  *kv, *label;

    last = select->data + select->len;

    for (c = select->data; c <= last; c = p + 1) {
        p = ngx_strlchr(c, last, ',');
        if (p == NULL) {
            p = last;
        }

        kind = ngx_pt_admin_label_term(c, p, &key, &value);

        label = NULL;
        kv = labels ? labels->elts : NULL;
        n = labels ? labels->nelts : 0;

        for (i = 0; i < n; i++) {
            if (kv[i].key.len == key.len
                && ngx_strncmp(kv[i].key.data, key.data, key.len) == 0)
            {
                label = &kv[i];
                break;
            }
        }

        switch (kind) {

        case NGX_PT_LABEL_EXISTS:
            if (label == NULL) {
                return 0;
            }
            break;

        case NGX_PT_LABEL_ABSENT:
            if (label) {
                return 0;
            }
            break;

        case NGX_PT_LABEL_EQ:
        case NGX_PT_LABEL_NE:
            if (label == NULL
                || (kind == NGX_PT_LABEL_EQ)
                   != (label->value.len == value.len
                       && ngx_strncmp(label->value.data, value.data,
                                      value.len) == 0))
            {
                return 0;
            }
            break;

        default: /* NGX_PT_LABEL_CONTAINS */
            if (label == NULL
                || ngx_pt_strfind(label->value.data,
                                  label->value.data + label->value.len,
                                  value.data, value.len, 1) == NULL)
            {
                return 0;
            }
        }
    }

    return 1;
}


/*
 * What lists filter on: the string fields "name", "base_path" and (tasks)
 * "state", and the lists of hrefs "created_resources" and
 * "reserved_resources" (a task's: one of them is the value).
 */

ngx_uint_t
ngx_pt_admin_filterable(ngx_pt_field_t *f)
{
    if (f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_SECRET|NGX_PT_F_READONLY)) {
        return 0;
    }

    if (f->type == NGX_PT_T_STR) {
        return ngx_strcmp(f->name, "name") == 0
               || ngx_strcmp(f->name, "base_path") == 0
               || ngx_strcmp(f->name, "state") == 0;
    }

    return f->type == NGX_PT_T_STRLIST
           && (ngx_strcmp(f->name, "created_resources") == 0
               || ngx_strcmp(f->name, "reserved_resources") == 0);
}


static ngx_pt_field_t *
ngx_pt_admin_filter_field(ngx_pt_admin_t *ctx, ngx_str_t *name)
{
    ngx_pt_field_t  *f;

    for (f = ctx->type->fields; f->name; f++) {
        if (ngx_pt_admin_filterable(f)
            && ngx_strlen(f->name) == name->len
            && ngx_strncmp(f->name, name->data, name->len) == 0)
        {
            return f;
        }
    }

    return NULL;
}


/* a list of strings matches when one of them does */

static ngx_int_t
ngx_pt_admin_filter_match_list(ngx_pt_filter_t *flt, ngx_array_t *list)
{
    ngx_str_t        *s, v;
    ngx_uint_t        i, reserved, shared;
    ngx_pt_filter_t   one;

    if (list == NULL) {
        return 0;
    }

    s = list->elts;
    one = *flt;
    one.offset = 0;

    reserved = (ngx_strcmp(flt->field->name, "reserved_resources") == 0);

    for (i = 0; i < list->nelts; i++) {
        v = s[i];

        shared = reserved && v.len > 7
                 && ngx_strncmp(v.data, "shared:", 7) == 0;

        if ((flt->hold == NGX_PT_HOLD_EXCLUSIVE && shared)
            || (flt->hold == NGX_PT_HOLD_SHARED && !shared))
        {
            continue;
        }

        if (shared) {
            v.data += 7;
            v.len -= 7;
        }

        if (ngx_pt_admin_filter_match(&one, &v)) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_pt_admin_filter_match(ngx_pt_filter_t *flt, void *rec)
{
    ngx_str_t  *s;

    if (flt->op == NGX_PT_OP_LABELS) {
        return ngx_pt_admin_label_match(&flt->value,
                             *(ngx_array_t **) ((u_char *) rec + flt->offset));
    }

    if (flt->field->type == NGX_PT_T_STRLIST && flt->offset) {
        return ngx_pt_admin_filter_match_list(flt,
                             *(ngx_array_t **) ((u_char *) rec + flt->offset));
    }

    s = (ngx_str_t *) ((u_char *) rec + flt->offset);

    switch (flt->op) {

    case NGX_PT_OP_EXACT:
        return s->len == flt->value.len
               && ngx_strncmp(s->data, flt->value.data, s->len) == 0;

    case NGX_PT_OP_CONTAINS:
        return ngx_pt_strfind(s->data, s->data + s->len, flt->value.data,
                              flt->value.len, 0) != NULL;

    case NGX_PT_OP_ICONTAINS:
        return ngx_pt_strfind(s->data, s->data + s->len, flt->value.data,
                              flt->value.len, 1) != NULL;

    case NGX_PT_OP_STARTSWITH:
        return s->len >= flt->value.len
               && ngx_strncmp(s->data, flt->value.data, flt->value.len) == 0;

    default: /* NGX_PT_OP_IN */
        return ngx_pt_admin_listed(&flt->value, s);
    }
}


/* whether s is one of the values of a comma-separated list */

ngx_uint_t
ngx_pt_admin_listed(ngx_str_t *list, ngx_str_t *s)
{
    u_char  *p, *c, *last;

    last = list->data + list->len;

    for (c = list->data; c <= last; c = p + 1) {
        p = ngx_strlchr(c, last, ',');
        if (p == NULL) {
            p = last;
        }

        if ((size_t) (p - c) == s->len
            && ngx_strncmp(c, s->data, s->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * ordering: name, base_path, pulp_created, pulp_last_updated; "-" first
 * for descending. NGX_DECLINED with a 400 in ctx for another.
 */

static ngx_int_t
ngx_pt_admin_ordering(ngx_pt_admin_t *ctx)
{
    ngx_str_t        name, msg, *ordering;
    ngx_int_t        desc;
    ngx_pt_field_t  *f;

    ordering = &ctx->query.ordering;

    ngx_pt_order_offset = offsetof(ngx_pt_meta_t, created);
    ngx_pt_order_desc = 1;

    if (ordering->len == 0) {
        return NGX_OK;
    }

    desc = (ordering->data[0] == '-');
    name.data = ordering->data + desc;
    name.len = ordering->len - desc;

    if (name.len == 12 && ngx_strncmp(name.data, "pulp_created", 12) == 0) {
        ngx_pt_order_offset = offsetof(ngx_pt_meta_t, created);

    } else if (name.len == 17
               && ngx_strncmp(name.data, "pulp_last_updated", 17) == 0)
    {
        ngx_pt_order_offset = offsetof(ngx_pt_meta_t, updated);

    } else {
        f = ngx_pt_admin_filter_field(ctx, &name);

        /* a list of strings has no order of its own */

        if (f == NULL || f->type != NGX_PT_T_STR) {
            msg.data = ngx_pnalloc(ctx->pool, ordering->len + 80);
            if (msg.data == NULL) {
                return NGX_ERROR;
            }

            msg.len = ngx_sprintf(msg.data, "Select a valid choice. %V is "
                                  "not one of the available choices.",
                                  ordering)
                      - msg.data;

            ngx_pt_json_map_open(ctx->g);
            ngx_pt_json_key(ctx->g, "ordering");
            ngx_pt_json_array_open(ctx->g);
            ngx_pt_json_str(ctx->g, &msg);
            ngx_pt_json_array_close(ctx->g);
            ngx_pt_json_map_close(ctx->g);

            ctx->status = NGX_HTTP_BAD_REQUEST;
            return NGX_DECLINED;
        }

        ngx_pt_order_offset = f->offset;
    }

    ngx_pt_order_desc = desc;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_pt_admin_cmp(const void *one, const void *two)
{
    size_t                     n;
    ngx_int_t                  rc;
    const ngx_pt_list_item_t  *a = one, *b = two;

    n = ngx_min(a->key.len, b->key.len);
    rc = n ? ngx_memcmp(a->key.data, b->key.data, n) : 0;

    if (rc == 0) {
        rc = (a->key.len > b->key.len) - (a->key.len < b->key.len);
    }

    if (rc == 0) {
        /* ties: by id, so that pages never overlap */
        rc = ngx_memcmp(a->id.data, b->id.data, NGX_PT_UUID_LEN);
    }

    return ngx_pt_order_desc ? -rc : rc;
}

/*
 * Opens a page of a list: {"count", "next", "previous", "results": [ —
 * the caller adds the results and closes the array and the object.
 */

ngx_int_t
ngx_pt_admin_page(ngx_pt_admin_t *ctx, ngx_uint_t count)
{
    ngx_int_t  rc, limit, offset;

    rc = NGX_OK;
    limit = ctx->query.limit;
    offset = ctx->query.offset;

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "count");
    ngx_pt_json_int(ctx->g, count);

    ngx_pt_json_key(ctx->g, "next");
    if (offset + limit < (ngx_int_t) count) {
        rc = ngx_pt_admin_page_link(ctx, limit, offset + limit);
    } else {
        ngx_pt_json_null(ctx->g);
    }

    ngx_pt_json_key(ctx->g, "previous");
    if (offset > 0 && rc == NGX_OK) {
        rc = ngx_pt_admin_page_link(ctx, limit,
                                    offset > limit ? offset - limit : 0);
    } else {
        ngx_pt_json_null(ctx->g);
    }

    ngx_pt_json_key(ctx->g, "results");
    ngx_pt_json_array_open(ctx->g);

    return rc;
}

/* an absolute URL of another page, other query arguments kept */

static ngx_int_t
ngx_pt_admin_page_link(ngx_pt_admin_t *ctx, ngx_int_t limit,
    ngx_int_t offset)
{
    u_char              *buf, *p, *a, *end, *last;
    size_t               len;
    ngx_str_t            host, url;
    ngx_http_request_t  *r = ctx->r;

    if (r->headers_in.host) {
        host = r->headers_in.host->value;
    } else {
        host = r->headers_in.server;
    }

    len = sizeof("https://") + host.len + r->uri.len * 3 + r->args.len
          + sizeof("&limit=&offset=") + 2 * NGX_INT_T_LEN;

    buf = ngx_pnalloc(ctx->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "%s://%V",
#if (NGX_HTTP_SSL)
                    r->connection->ssl ? "https" : "http",
#else
                    "http",
#endif
                    &host);

    p = (u_char *) ngx_escape_uri(p, r->uri.data, r->uri.len,
                                  NGX_ESCAPE_URI);
    *p++ = '?';

    a = r->args.data;
    last = a + r->args.len;

    for ( /* void */ ; a < last; a = end + 1) {
        end = ngx_strlchr(a, last, '&');
        if (end == NULL) {
            end = last;
        }

        if ((end - a >= 6 && ngx_strncmp(a, "limit=", 6) == 0)
            || (end - a >= 7 && ngx_strncmp(a, "offset=", 7) == 0)
            || end == a)
        {
            continue;
        }

        p = ngx_cpymem(p, a, end - a);
        *p++ = '&';
    }

    p = ngx_sprintf(p, "limit=%i", limit);

    if (offset > 0) {
        p = ngx_sprintf(p, "&offset=%i", offset);
    }

    url.data = buf;
    url.len = p - buf;

    ngx_pt_json_str(ctx->g, &url);

    return NGX_OK;
}
