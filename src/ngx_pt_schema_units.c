
/*
 * ngx_pullthrough: content units, as the admin API lists them, kept as
 * indexes beside what pulls record, so that a list costs its page and not
 * the store:
 *
 *   manifest_units, blob_units
 *                   <digest>               -> "", one per digest any
 *                                             repository has (mdb_stat
 *                                             counts them)
 *   unit_holders    <m|b><digest>\0<repo>  -> "", the repositories that
 *                                             have it
 *   unit_ids        <id>                   -> <m|b><digest>, or
 *                                             t<repo>\0<tag>
 *
 * A tag unit is an entry of tags itself. A unit's id is a UUID (version 5
 * layout) from the SHA-256 of its kind and of what it is, the digest (a
 * tag: <repo>:<tag>@<digest>): the same blob has the same href in every
 * repository, and a tag that moves is a new unit. The writers of tags,
 * manifests and blobs (ngx_pt_schema.c) call the upkeep here in their own
 * transactions, so the indexes never differ from the content.
 */


#include <ngx_pt.h>
#include <ngx_pt_schema.h>
#include <ngx_pt_schema_int.h>

#include <openssl/evp.h>


typedef struct {
    ngx_pool_t                 *pool;
    ngx_uint_t                  kind;
    ngx_pt_unit_t              *filter;
    ngx_uint_t                  skip;
    ngx_uint_t                  n;
    size_t                      matched;
    ngx_array_t                *out;        /* ngx_pt_unit_t */
} ngx_pt_units_walk_t;


typedef struct {
    ngx_pool_t                 *pool;
    ngx_array_t                 entries;    /* ngx_keyval_t: key, value */
} ngx_pt_units_batch_t;


static ngx_uint_t ngx_pt_unit_kind(ngx_uint_t db);
static ngx_int_t ngx_pt_holder_key(ngx_pool_t *pool, ngx_uint_t kind,
    ngx_str_t *digest, ngx_str_t *repo, ngx_str_t *key);
static ngx_int_t ngx_pt_unit_hold(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo);
static ngx_int_t ngx_pt_unit_release(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo);
static ngx_int_t ngx_pt_unit_id_put(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t kind, ngx_pt_unit_t *unit, ngx_uint_t del);
static ngx_int_t ngx_pt_unit_holder(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo);
static ngx_int_t ngx_pt_units_first(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_units_collect(void *data, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *value);
static ngx_int_t ngx_pt_units_tag(void *data, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *value);
static ngx_int_t ngx_pt_units_digest(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_units_key(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_upgrade_units(ngx_log_t *log, ngx_uint_t db,
    ngx_uint_t *total);
static ngx_int_t ngx_pt_upgrade_units_one(void *data, ngx_str_t *key,
    ngx_str_t *val);


static const char  *ngx_pt_unit_prns[] = {
    "container.tag",
    "container.manifest",
    "container.blob",
    "container.containernamespace"
};

static const u_char  ngx_pt_unit_chars[] = "tmb";

static const ngx_uint_t  ngx_pt_unit_dbs[] = {
    NGX_PT_DB_TAGS, NGX_PT_DB_MANIFEST_UNITS, NGX_PT_DB_BLOB_UNITS
};


const char *
ngx_pt_unit_prn(ngx_uint_t kind)
{
    return ngx_pt_unit_prns[kind];
}


static ngx_uint_t
ngx_pt_unit_kind(ngx_uint_t db)
{
    switch (db) {

    case NGX_PT_DB_TAGS:
        return NGX_PT_UNIT_TAGS;

    case NGX_PT_DB_MANIFESTS:
        return NGX_PT_UNIT_MANIFESTS;

    default:
        return NGX_PT_UNIT_BLOBS;
    }
}


/* the id: a digest context of the process's own, reused for every unit */

ngx_int_t
ngx_pt_unit_id(ngx_uint_t kind, ngx_pt_unit_t *unit, u_char *id)
{
    u_char         md[EVP_MAX_MD_SIZE];
    unsigned int   n;

    static EVP_MD_CTX  *c;

    if (c == NULL) {
        c = EVP_MD_CTX_new();
        if (c == NULL) {
            return NGX_ERROR;
        }
    }

    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(c, ngx_pt_unit_prns[kind],
                            ngx_strlen(ngx_pt_unit_prns[kind])) != 1)
    {
        return NGX_ERROR;
    }

    if (kind == NGX_PT_UNIT_TAGS
        && (EVP_DigestUpdate(c, unit->repo.data, unit->repo.len) != 1
            || EVP_DigestUpdate(c, ":", 1) != 1
            || EVP_DigestUpdate(c, unit->name.data, unit->name.len) != 1
            || EVP_DigestUpdate(c, "@", 1) != 1))
    {
        return NGX_ERROR;
    }

    if (EVP_DigestUpdate(c, unit->digest.data, unit->digest.len) != 1
        || EVP_DigestFinal_ex(c, md, &n) != 1)
    {
        return NGX_ERROR;
    }

    md[6] = (md[6] & 0x0f) | 0x50;
    md[8] = (md[8] & 0x3f) | 0x80;

    (void) ngx_pt_uuid_format(id, md);

    return NGX_OK;
}


/* upkeep: the writers of content call these */

ngx_int_t
ngx_pt_units_track(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item, ngx_str_t *old,
    ngx_str_t *value)
{
    ngx_uint_t     kind;
    ngx_pt_tag_t   t;
    ngx_pt_unit_t  unit;

    kind = ngx_pt_unit_kind(db);

    if (kind != NGX_PT_UNIT_TAGS) {
        /* a repository has a digest it did not have */
        return ngx_pt_unit_hold(pool, log, txn, kind, item, repo);
    }

    if (ngx_pt_tag_decode(value, &t) != NGX_OK) {
        return NGX_ERROR;
    }

    if (old && old->len == t.digest.len
        && ngx_strncmp(old->data, t.digest.data, old->len) == 0)
    {
        return NGX_OK;
    }

    unit.repo = *repo;
    unit.name = *item;

    if (old && old->len) {
        unit.digest = *old;

        if (ngx_pt_unit_id_put(pool, log, txn, kind, &unit, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "pullthrough units: tag \"%V:%V\" moves from %V",
                       repo, item, old);
    }

    unit.digest = t.digest;

    return ngx_pt_unit_id_put(pool, log, txn, kind, &unit, 0);
}


ngx_int_t
ngx_pt_units_untrack(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo)
{
    ngx_uint_t           i, kind;
    ngx_array_t          units;
    ngx_pt_unit_t       *u;
    ngx_pt_units_walk_t  w;

    kind = ngx_pt_unit_kind(db);

    if (ngx_array_init(&units, pool, 16, sizeof(ngx_pt_unit_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&w, sizeof(ngx_pt_units_walk_t));

    w.pool = pool;
    w.kind = kind;
    w.out = &units;

    /* collected first: the walk's cursor must not see the deletions */

    if (ngx_pt_items_each(pool, log, txn, db, repo, ngx_pt_units_collect, &w)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    u = units.elts;

    for (i = 0; i < units.nelts; i++) {

        if (kind == NGX_PT_UNIT_TAGS) {
            if (ngx_pt_unit_id_put(pool, log, txn, kind, &u[i], 1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_pt_unit_release(pool, log, txn, kind, &u[i].digest, repo)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* an entry of a repository's content as its unit, copied */

static ngx_int_t
ngx_pt_units_collect(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_pt_units_walk_t *w = data;

    ngx_pt_tag_t    t;
    ngx_pt_unit_t  *u;

    u = ngx_array_push(w->out);
    if (u == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(u, sizeof(ngx_pt_unit_t));

    u->repo.len = repo->len;
    u->repo.data = ngx_pstrdup(w->pool, repo);

    if (w->kind != NGX_PT_UNIT_TAGS) {
        u->digest.len = item->len;
        u->digest.data = ngx_pstrdup(w->pool, item);

        return (u->repo.data && u->digest.data) ? NGX_OK : NGX_ERROR;
    }

    if (ngx_pt_tag_decode(value, &t) != NGX_OK) {
        /* a corrupt tag has no unit */
        w->out->nelts--;
        return NGX_OK;
    }

    u->name.len = item->len;
    u->name.data = ngx_pstrdup(w->pool, item);
    u->digest.len = t.digest.len;
    u->digest.data = ngx_pstrdup(w->pool, &t.digest);

    return (u->repo.data && u->name.data && u->digest.data) ? NGX_OK
                                                             : NGX_ERROR;
}


/* <m|b><digest>\0<repo>; without a repo, the prefix of the digest's */

static ngx_int_t
ngx_pt_holder_key(ngx_pool_t *pool, ngx_uint_t kind, ngx_str_t *digest,
    ngx_str_t *repo, ngx_str_t *key)
{
    u_char  *p;

    key->len = 1 + digest->len + 1 + (repo ? repo->len : 0);
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = key->data;
    *p++ = ngx_pt_unit_chars[kind];
    p = ngx_cpymem(p, digest->data, digest->len);
    *p++ = '\0';

    if (repo) {
        ngx_memcpy(p, repo->data, repo->len);
    }

    return NGX_OK;
}


/* a repository has a manifest or blob: the first one makes the unit */

static ngx_int_t
ngx_pt_unit_hold(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo)
{
    ngx_int_t      rc;
    ngx_str_t      key, val, none;
    ngx_pt_unit_t  unit;

    ngx_str_null(&none);

    if (ngx_pt_holder_key(pool, kind, digest, repo, &key) != NGX_OK
        || ngx_pt_value_put(log, txn, NGX_PT_DB_UNIT_HOLDERS, &key, &none)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_db_get(log, txn, ngx_pt_unit_dbs[kind], digest, &val);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_pt_value_put(log, txn, ngx_pt_unit_dbs[kind], digest, &none)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&unit, sizeof(ngx_pt_unit_t));
    unit.digest = *digest;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough units: new %s unit %V",
                   ngx_pt_unit_prns[kind], digest);

    return ngx_pt_unit_id_put(pool, log, txn, kind, &unit, 0);
}


/* a repository no longer has it: the last one takes the unit along */

static ngx_int_t
ngx_pt_unit_release(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo)
{
    ngx_int_t      rc;
    ngx_str_t      key, other;
    ngx_pt_unit_t  unit;

    if (ngx_pt_holder_key(pool, kind, digest, repo, &key) != NGX_OK
        || ngx_pt_db_del(log, txn, NGX_PT_DB_UNIT_HOLDERS, &key) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_unit_holder(pool, log, txn, kind, digest, &other);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_pt_db_del(log, txn, ngx_pt_unit_dbs[kind], digest) == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_memzero(&unit, sizeof(ngx_pt_unit_t));
    unit.digest = *digest;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough units: %s unit %V gone",
                   ngx_pt_unit_prns[kind], digest);

    return ngx_pt_unit_id_put(pool, log, txn, kind, &unit, 1);
}


/* unit_ids: <id> -> <m|b><digest> or t<repo>\0<tag>; del: remove it */

static ngx_int_t
ngx_pt_unit_id_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_pt_unit_t *unit, ngx_uint_t del)
{
    u_char     *p, id[NGX_PT_UUID_LEN];
    ngx_str_t   key, val;

    if (ngx_pt_unit_id(kind, unit, id) != NGX_OK) {
        return NGX_ERROR;
    }

    key.data = id;
    key.len = NGX_PT_UUID_LEN;

    if (del) {
        return ngx_pt_db_del(log, txn, NGX_PT_DB_UNIT_IDS, &key) == NGX_ERROR
               ? NGX_ERROR : NGX_OK;
    }

    val.len = (kind == NGX_PT_UNIT_TAGS)
              ? 1 + unit->repo.len + 1 + unit->name.len
              : 1 + unit->digest.len;
    val.data = ngx_pnalloc(pool, val.len);
    if (val.data == NULL) {
        return NGX_ERROR;
    }

    p = val.data;
    *p++ = ngx_pt_unit_chars[kind];

    if (kind == NGX_PT_UNIT_TAGS) {
        p = ngx_cpymem(p, unit->repo.data, unit->repo.len);
        *p++ = '\0';
        ngx_memcpy(p, unit->name.data, unit->name.len);

    } else {
        ngx_memcpy(p, unit->digest.data, unit->digest.len);
    }

    return ngx_pt_value_put(log, txn, NGX_PT_DB_UNIT_IDS, &key, &val);
}


/* one repository that has a manifest or blob, copied; NGX_DECLINED: none */

static ngx_int_t
ngx_pt_unit_holder(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *digest, ngx_str_t *repo)
{
    ngx_int_t  rc;
    ngx_str_t  prefix, key;

    if (ngx_pt_holder_key(pool, kind, digest, NULL, &prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_null(&key);

    rc = ngx_pt_db_each(log, txn, NGX_PT_DB_UNIT_HOLDERS, &prefix, NULL,
                        ngx_pt_units_first, &key);
    if (rc != NGX_OK && rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (key.len == 0) {
        return NGX_DECLINED;
    }

    repo->len = key.len - prefix.len;
    repo->data = ngx_pnalloc(pool, repo->len);
    if (repo->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(repo->data, key.data + prefix.len, repo->len);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_units_first(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_str_t *first = data;

    *first = *key;

    return NGX_DONE;
}


/* reading: one unit by its id or digest, counts, pages */

ngx_int_t
ngx_pt_unit_find(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *id, ngx_pt_unit_t *unit)
{
    u_char        *nul, check[NGX_PT_UUID_LEN];
    ngx_int_t      rc;
    ngx_str_t      val, digest;
    ngx_pt_tag_t   t;

    if (id->len != NGX_PT_UUID_LEN) {
        return NGX_DECLINED;
    }

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_UNIT_IDS, id, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    if (val.len < 2 || val.data[0] != ngx_pt_unit_chars[kind]) {
        return NGX_DECLINED;
    }

    if (kind != NGX_PT_UNIT_TAGS) {
        digest.len = val.len - 1;
        digest.data = ngx_pnalloc(pool, digest.len);
        if (digest.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(digest.data, val.data + 1, digest.len);

        return ngx_pt_unit_get(pool, log, txn, kind, &digest, unit);
    }

    nul = ngx_strlchr(val.data + 1, val.data + val.len, '\0');
    if (nul == NULL) {
        return NGX_DECLINED;
    }

    unit->repo.len = nul - val.data - 1;
    unit->repo.data = ngx_pnalloc(pool, val.len);
    if (unit->repo.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(unit->repo.data, val.data + 1, val.len - 1);

    unit->name.data = unit->repo.data + unit->repo.len + 1;
    unit->name.len = val.data + val.len - nul - 1;

    rc = ngx_pt_tag_get(pool, log, txn, &unit->repo, &unit->name, &t);
    if (rc != NGX_OK) {
        return rc;
    }

    unit->digest = t.digest;

    /* the id names the tag where it was: one that moved is another unit */

    if (ngx_pt_unit_id(kind, unit, check) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_strncmp(check, id->data, NGX_PT_UUID_LEN) == 0 ? NGX_OK
                                                               : NGX_DECLINED;
}


/* a manifest or blob unit by its digest, with a repository that has it */

ngx_int_t
ngx_pt_unit_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *digest, ngx_pt_unit_t *unit)
{
    ngx_memzero(unit, sizeof(ngx_pt_unit_t));

    unit->digest = *digest;

    return ngx_pt_unit_holder(pool, log, txn, kind, digest, &unit->repo);
}


ngx_int_t
ngx_pt_units_count(ngx_log_t *log, MDB_txn *txn, ngx_uint_t kind, size_t *n)
{
    return ngx_pt_db_count(log, txn, ngx_pt_unit_dbs[kind], n);
}


/*
 * Units in order (tags by repository and name, the others by digest):
 * up to n from the offset-th of those the filter (name, digest) lets
 * through, and how many it lets through. Without a filter the walk stops
 * at the page's end and the count is LMDB's; a digest filter on manifests
 * or blobs is one lookup; a tag filter walks the tags without copying.
 */

ngx_int_t
ngx_pt_units_page(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_pt_unit_t *filter, ngx_uint_t offset, ngx_uint_t n,
    ngx_array_t *out, size_t *count)
{
    ngx_int_t            rc;
    ngx_uint_t           i, filtered;
    ngx_pt_unit_t       *u, one;
    ngx_pt_units_walk_t  w;

    filtered = filter && (filter->digest.len
                          || (kind == NGX_PT_UNIT_TAGS && filter->name.len));

    if (kind != NGX_PT_UNIT_TAGS && filtered) {
        rc = ngx_pt_unit_get(pool, log, txn, kind, &filter->digest, &one);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        *count = (rc == NGX_OK);

        if (rc == NGX_OK && offset == 0 && n) {
            u = ngx_array_push(out);
            if (u == NULL) {
                return NGX_ERROR;
            }

            *u = one;
        }

        return NGX_OK;
    }

    if (!filtered && ngx_pt_units_count(log, txn, kind, count) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&w, sizeof(ngx_pt_units_walk_t));

    w.pool = pool;
    w.kind = kind;
    w.filter = filtered ? filter : NULL;
    w.skip = offset;
    w.n = n;
    w.out = out;

    if (kind == NGX_PT_UNIT_TAGS) {
        if (n == 0 && !filtered) {
            return NGX_OK;
        }

        rc = ngx_pt_items_each(pool, log, txn, NGX_PT_DB_TAGS, NULL,
                               ngx_pt_units_tag, &w);
        if (rc != NGX_OK && rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (filtered) {
            *count = w.matched;
        }

        return NGX_OK;
    }

    if (n == 0) {
        return NGX_OK;
    }

    rc = ngx_pt_db_each(log, txn, ngx_pt_unit_dbs[kind], NULL, NULL,
                        ngx_pt_units_digest, &w);
    if (rc != NGX_OK && rc != NGX_DONE) {
        return NGX_ERROR;
    }

    /* each with a repository that has it, for what the record says */

    u = out->elts;

    for (i = 0; i < out->nelts; i++) {
        rc = ngx_pt_unit_holder(pool, log, txn, kind, &u[i].digest,
                                &u[i].repo);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_units_tag(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_pt_units_walk_t *w = data;

    ngx_pt_tag_t   t;
    ngx_pt_unit_t  *f, *u;

    if (ngx_pt_tag_decode(value, &t) != NGX_OK) {
        return NGX_OK;
    }

    f = w->filter;

    if (f && ((f->name.len && (f->name.len != item->len
                               || ngx_strncmp(f->name.data, item->data,
                                              item->len) != 0))
              || (f->digest.len && (f->digest.len != t.digest.len
                                    || ngx_strncmp(f->digest.data,
                                                   t.digest.data,
                                                   t.digest.len) != 0))))
    {
        return NGX_OK;
    }

    if (w->matched++ < w->skip || w->out->nelts >= w->n) {
        /* without a filter the count is known: the page ends the walk */
        return (f == NULL && w->out->nelts >= w->n) ? NGX_DONE : NGX_OK;
    }

    u = ngx_array_push(w->out);
    if (u == NULL) {
        return NGX_ERROR;
    }

    u->repo.len = repo->len;
    u->repo.data = ngx_pstrdup(w->pool, repo);
    u->name.len = item->len;
    u->name.data = ngx_pstrdup(w->pool, item);
    u->digest.len = t.digest.len;
    u->digest.data = ngx_pstrdup(w->pool, &t.digest);

    if (u->repo.data == NULL || u->name.data == NULL || u->digest.data == NULL)
    {
        return NGX_ERROR;
    }

    return (f == NULL && w->out->nelts >= w->n) ? NGX_DONE : NGX_OK;
}


static ngx_int_t
ngx_pt_units_digest(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_units_walk_t *w = data;

    ngx_pt_unit_t  *u;

    if (w->matched++ < w->skip) {
        return NGX_OK;
    }

    u = ngx_array_push(w->out);
    if (u == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(u, sizeof(ngx_pt_unit_t));

    u->digest.len = key->len;
    u->digest.data = ngx_pstrdup(w->pool, key);
    if (u->digest.data == NULL) {
        return NGX_ERROR;
    }

    return w->out->nelts >= w->n ? NGX_DONE : NGX_OK;
}


/* every digest of a kind (manifests, blobs), whatever has it */

typedef struct {
    ngx_pt_item_pt              handler;
    void                       *data;
} ngx_pt_units_each_t;


ngx_int_t
ngx_pt_units_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t kind,
    ngx_pt_item_pt handler, void *data)
{
    ngx_pt_units_each_t  e;

    e.handler = handler;
    e.data = data;

    return ngx_pt_db_each(log, txn, ngx_pt_unit_dbs[kind], NULL, NULL,
                          ngx_pt_units_key, &e);
}


static ngx_int_t
ngx_pt_units_key(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_units_each_t *e = data;

    ngx_str_t  none;

    ngx_str_null(&none);

    return e->handler(e->data, &none, key, &none);
}


/*
 * 3 -> 4: the units' indexes, from every entry of tags, manifests and
 * blobs, NGX_PT_UNITS_BATCH entries a transaction. Tracking an entry
 * again changes nothing, so an interrupted upgrade simply runs again.
 */

#define NGX_PT_UNITS_BATCH  1000


ngx_int_t
ngx_pt_upgrade_3_4(ngx_log_t *log)
{
    ngx_uint_t  i, total;

    static ngx_uint_t  dbs[] = {
        NGX_PT_DB_TAGS, NGX_PT_DB_MANIFESTS, NGX_PT_DB_BLOBS
    };

    total = 0;

    for (i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        if (ngx_pt_upgrade_units(log, dbs[i], &total) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "pullthrough: store upgrade 3 -> 4: %ui entries of "
                  "content indexed as units", total);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_upgrade_units(ngx_log_t *log, ngx_uint_t db, ngx_uint_t *total)
{
    u_char                *nul, last[NGX_PT_STORE_KEY_MAX];
    MDB_txn               *txn;
    ngx_int_t              rc;
    ngx_str_t              after, repo, item, value, *prev;
    ngx_uint_t             i;
    ngx_keyval_t          *kv;
    ngx_pt_units_batch_t   b;

    after.data = last;
    after.len = 0;

    do {
        b.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
        if (b.pool == NULL) {
            return NGX_ERROR;
        }

        if (ngx_array_init(&b.entries, b.pool, NGX_PT_UNITS_BATCH,
                           sizeof(ngx_keyval_t))
            != NGX_OK
            || ngx_pt_txn_begin(log, 0, &txn) != NGX_OK)
        {
            ngx_destroy_pool(b.pool);
            return NGX_ERROR;
        }

        rc = ngx_pt_db_each(log, txn, db, NULL, after.len ? &after : NULL,
                            ngx_pt_upgrade_units_one, &b);

        ngx_pt_txn_abort(txn);

        if ((rc != NGX_OK && rc != NGX_DONE)
            || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
        {
            ngx_destroy_pool(b.pool);
            return NGX_ERROR;
        }

        kv = b.entries.elts;
        rc = NGX_OK;

        for (i = 0; rc == NGX_OK && i < b.entries.nelts; i++) {
            nul = ngx_strlchr(kv[i].key.data,
                              kv[i].key.data + kv[i].key.len, '\0');
            value = kv[i].value;

            if (nul == NULL
                || ngx_pt_value_strip(log, db, &value) != NGX_OK)
            {
                continue;
            }

            repo.data = kv[i].key.data;
            repo.len = nul - kv[i].key.data;
            item.data = nul + 1;
            item.len = kv[i].key.len - repo.len - 1;

            rc = ngx_pt_units_track(b.pool, log, txn, db, &repo, &item, NULL,
                                    &value);

            if (rc == NGX_ERROR && db == NGX_PT_DB_TAGS) {
                /* a corrupt tag has no unit */
                rc = NGX_OK;
            }
        }

        if (rc != NGX_OK) {
            ngx_pt_txn_abort(txn);
            ngx_destroy_pool(b.pool);
            return NGX_ERROR;
        }

        if (ngx_pt_txn_commit(log, txn) != NGX_OK) {
            ngx_destroy_pool(b.pool);
            return NGX_ERROR;
        }

        i = b.entries.nelts;
        *total += i;

        if (i) {
            prev = &kv[i - 1].key;
            after.len = ngx_min(prev->len, NGX_PT_STORE_KEY_MAX);
            ngx_memcpy(last, prev->data, after.len);
        }

        ngx_destroy_pool(b.pool);

    } while (i == NGX_PT_UNITS_BATCH);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_upgrade_units_one(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_units_batch_t *b = data;

    ngx_keyval_t  *kv;

    kv = ngx_array_push(&b->entries);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    kv->key.len = key->len;
    kv->key.data = ngx_pstrdup(b->pool, key);
    kv->value.len = val->len;
    kv->value.data = ngx_pstrdup(b->pool, val);

    if (kv->key.data == NULL || kv->value.data == NULL) {
        return NGX_ERROR;
    }

    return b->entries.nelts == NGX_PT_UNITS_BATCH ? NGX_DONE : NGX_OK;
}
