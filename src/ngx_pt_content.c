
/*
 * ngx_pullthrough: what pulls record in the metadata store. Keys of the
 * content databases start with the repository name and a NUL, so that one
 * repository's entries are a contiguous, sorted range:
 *
 *   tags       <repo>\0<tag>     -> digest
 *   manifests  <repo>\0<digest>  -> {"media_type", "size", "blobs", "manifests"}
 *   blobs      <repo>\0<digest>  -> size ("-1" until the blob is fetched)
 *
 * A repository and its per-image distribution are made by the first
 * manifest pulled under a pull-through distribution; a new or moved tag
 * makes a new repository version and drops the previous one.
 */


#include <ngx_pt.h>


typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    MDB_txn                    *txn;
    ngx_str_t                   repo;
    ngx_array_t                 tags;        /* ngx_keyval_t */
    ngx_array_t                 manifests;   /* ngx_str_t */
    ngx_array_t                 blobs;       /* ngx_str_t */
} ngx_pt_snapshot_t;


static ngx_int_t ngx_pt_content_key(ngx_pool_t *pool, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *key);
static ngx_int_t ngx_pt_content_push(ngx_array_t *a, yajl_val v);
static ngx_int_t ngx_pt_content_delete_records(ngx_pool_t *pool,
    ngx_log_t *log, MDB_txn *txn, ngx_str_t *name, ngx_str_t *id);
static ngx_int_t ngx_pt_content_repo(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_manifest_info_t *mi, ngx_str_t *now,
    ngx_pt_repo_t **repop);
static ngx_int_t ngx_pt_content_version(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_repo_t *repo, ngx_str_t *now, ngx_uint_t initial);
static ngx_int_t ngx_pt_content_snapshot(ngx_pt_snapshot_t *s);
static ngx_int_t ngx_pt_content_snapshot_tag(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_uint_t ngx_pt_content_same(ngx_pool_t *pool, ngx_str_t *version,
    ngx_pt_snapshot_t *s);
static ngx_int_t ngx_pt_content_add_unique(ngx_array_t *a, ngx_str_t *v);
static ngx_int_t ngx_pt_content_delete_range(ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *prefix);


static ngx_int_t
ngx_pt_content_key(ngx_pool_t *pool, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *key)
{
    u_char  *p;

    key->len = repo->len + 1 + (item ? item->len : 0);
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, repo->data, repo->len);
    *p++ = '\0';

    if (item) {
        ngx_memcpy(p, item->data, item->len);
    }

    return NGX_OK;
}


/* the digest a tag points at; with tag NULL, whether the repo exists */

ngx_int_t
ngx_pt_content_tag(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *tag, ngx_str_t *digest)
{
    MDB_txn    *txn;
    ngx_int_t   rc;
    ngx_str_t   key, val;

    if (tag) {
        if (ngx_pt_content_key(pool, repo, tag, &key) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        key = *repo;
    }

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_db_get(log, txn, tag ? NGX_PT_DB_TAGS : NGX_PT_DB_REPO_NAMES,
                       &key, &val);

    if (rc == NGX_OK && digest) {
        digest->data = ngx_pnalloc(pool, val.len);
        if (digest->data == NULL) {
            rc = NGX_ERROR;

        } else {
            ngx_memcpy(digest->data, val.data, val.len);
            digest->len = val.len;
        }
    }

    ngx_pt_txn_abort(txn);

    return rc;
}


ngx_int_t
ngx_pt_content_manifest(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest, ngx_str_t *media_type, off_t *size)
{
    MDB_txn    *txn;
    yajl_val    doc, v;
    ngx_int_t   rc;
    ngx_str_t   key, val, err;

    if (ngx_pt_content_key(pool, repo, digest, &key) != NGX_OK
        || ngx_pt_txn_begin(log, 0, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_MANIFESTS, &key, &val);

    if (rc == NGX_OK) {
        doc = ngx_pt_json_parse(pool, &val, &err);
        v = ngx_pt_json_get(doc, "media_type");

        if (v && YAJL_IS_STRING(v)) {
            media_type->len = ngx_strlen(v->u.string);
            media_type->data = (u_char *) v->u.string;

        } else {
            rc = NGX_ERROR;
        }

        v = ngx_pt_json_get(doc, "size");
        *size = (v && YAJL_IS_INTEGER(v)) ? YAJL_GET_INTEGER(v) : -1;
    }

    ngx_pt_txn_abort(txn);

    return rc;
}


ngx_int_t
ngx_pt_content_blob_has(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest)
{
    MDB_txn    *txn;
    ngx_int_t   rc;
    ngx_str_t   key, val;

    if (ngx_pt_content_key(pool, repo, digest, &key) != NGX_OK
        || ngx_pt_txn_begin(log, 0, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_BLOBS, &key, &val);

    ngx_pt_txn_abort(txn);

    return rc;
}


ngx_int_t
ngx_pt_content_blob_add(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest, off_t size)
{
    u_char      buf[NGX_OFF_T_LEN + 1];
    MDB_txn    *txn;
    ngx_str_t   key, val;

    if (ngx_pt_content_key(pool, repo, digest, &key) != NGX_OK
        || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    val.data = buf;
    val.len = ngx_sprintf(buf, "%O", size) - buf;

    if (ngx_pt_db_put(log, txn, NGX_PT_DB_BLOBS, &key, &val) != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return NGX_ERROR;
    }

    return ngx_pt_txn_commit(log, txn);
}


/* a JSON string into an array of strings; anything else is skipped */

static ngx_int_t
ngx_pt_content_push(ngx_array_t *a, yajl_val v)
{
    ngx_str_t  *s;

    if (v == NULL || !YAJL_IS_STRING(v)) {
        return NGX_OK;
    }

    s = ngx_array_push(a);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->data = (u_char *) v->u.string;
    s->len = ngx_strlen(v->u.string);

    return NGX_OK;
}


/* the digests a manifest refers to, from its JSON */

ngx_int_t
ngx_pt_content_parse_manifest(ngx_pool_t *pool, ngx_pt_manifest_info_t *mi,
    u_char *data, size_t len)
{
    size_t      i;
    yajl_val    doc, v, item;
    ngx_str_t   in, err;

    in.data = data;
    in.len = len;

    doc = ngx_pt_json_parse(pool, &in, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&mi->blobs, pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&mi->manifests, pool, 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_pt_json_get(doc, "mediaType");
    if (v && YAJL_IS_STRING(v)) {
        mi->media_type.data = (u_char *) v->u.string;
        mi->media_type.len = ngx_strlen(v->u.string);
    }

    v = ngx_pt_json_get(ngx_pt_json_get(doc, "config"), "digest");
    if (ngx_pt_content_push(&mi->blobs, v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mi->blobs.nelts) {
        /* the config, when the manifest names one, comes first */
        mi->config = ((ngx_str_t *) mi->blobs.elts)[0];
    }

    v = ngx_pt_json_get(doc, "layers");
    if (v == NULL) {
        /* Docker schema 1 */
        v = ngx_pt_json_get(doc, "fsLayers");
    }

    for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        item = ngx_pt_json_get(v->u.array.values[i], "digest");
        if (item == NULL) {
            item = ngx_pt_json_get(v->u.array.values[i], "blobSum");
        }

        if (ngx_pt_content_push(&mi->blobs, item) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    v = ngx_pt_json_get(doc, "manifests");

    if (v && YAJL_IS_ARRAY(v) && mi->media_type.len == 0) {
        ngx_str_set(&mi->media_type, "application/vnd.oci.image.index.v1+json");
    }

    for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        item = ngx_pt_json_get(v->u.array.values[i], "digest");

        if (ngx_pt_content_push(&mi->manifests, item) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (mi->media_type.len == 0) {
        ngx_str_set(&mi->media_type,
                    "application/vnd.oci.image.manifest.v1+json");
    }

    return NGX_OK;
}


/*
 * Records a verified manifest, in one write transaction: the repository
 * and its distribution if new, the manifest, the blobs it names (so this
 * repository may serve them), the tag, and a version if the tag moved.
 */

ngx_int_t
ngx_pt_content_manifest_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi)
{
    yajl_gen         g;
    MDB_txn         *txn;
    ngx_int_t        rc;
    ngx_str_t        key, val, old, now, *s, minus;
    ngx_uint_t       i;
    ngx_pt_repo_t   *repo;

    if (ngx_pt_now(pool, &now) != NGX_OK) {
        return NGX_ERROR;
    }

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "media_type");
    ngx_pt_json_str(g, &mi->media_type);
    ngx_pt_json_key(g, "size");
    ngx_pt_json_int(g, mi->size);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, &now);
    ngx_pt_json_key(g, "config");
    ngx_pt_json_str(g, &mi->config);

    ngx_pt_json_key(g, "blobs");
    ngx_pt_json_array_open(g);
    s = mi->blobs.elts;
    for (i = 0; i < mi->blobs.nelts; i++) {
        ngx_pt_json_str(g, &s[i]);
    }
    ngx_pt_json_array_close(g);

    ngx_pt_json_key(g, "manifests");
    ngx_pt_json_array_open(g);
    s = mi->manifests.elts;
    for (i = 0; i < mi->manifests.nelts; i++) {
        ngx_pt_json_str(g, &s[i]);
    }
    ngx_pt_json_array_close(g);

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, pool, &val) != NGX_OK
        || ngx_pt_content_key(pool, &mi->repo, &mi->digest, &key) != NGX_OK
        || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_content_repo(pool, log, txn, mi, &now, &repo) != NGX_OK
        || ngx_pt_db_put(log, txn, NGX_PT_DB_MANIFESTS, &key, &val) != NGX_OK)
    {
        goto failed;
    }

    ngx_str_set(&minus, "-1");

    s = mi->blobs.elts;
    for (i = 0; i < mi->blobs.nelts; i++) {
        if (ngx_pt_content_key(pool, &mi->repo, &s[i], &key) != NGX_OK) {
            goto failed;
        }

        rc = ngx_pt_db_get(log, txn, NGX_PT_DB_BLOBS, &key, &old);

        if (rc == NGX_ERROR
            || (rc == NGX_DECLINED
                && ngx_pt_db_put(log, txn, NGX_PT_DB_BLOBS, &key, &minus)
                   != NGX_OK))
        {
            goto failed;
        }
    }

    if (mi->tag.len) {
        if (ngx_pt_content_key(pool, &mi->repo, &mi->tag, &key) != NGX_OK) {
            goto failed;
        }

        rc = ngx_pt_db_get(log, txn, NGX_PT_DB_TAGS, &key, &old);
        if (rc == NGX_ERROR) {
            goto failed;
        }

        if ((rc == NGX_DECLINED || old.len != mi->digest.len
             || ngx_strncmp(old.data, mi->digest.data, old.len) != 0)
            && ngx_pt_db_put(log, txn, NGX_PT_DB_TAGS, &key, &mi->digest)
               != NGX_OK)
        {
            goto failed;
        }
    }

    /*
     * A new version when what the tags reach changed: a new or moved tag,
     * or the child manifest of a tagged index pulled by digest. The same
     * tag at the same digest changes nothing.
     */

    if (ngx_pt_content_version(pool, log, txn, repo, &now, 0) != NGX_OK) {
        goto failed;
    }

    return ngx_pt_txn_commit(log, txn);

failed:

    ngx_pt_txn_abort(txn);
    return NGX_ERROR;
}


/* the repository of a pull, made with its distribution on first use */

static ngx_int_t
ngx_pt_content_repo(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_manifest_info_t *mi, ngx_str_t *now, ngx_pt_repo_t **repop)
{
    void           *rec;
    ngx_int_t       rc;
    ngx_str_t       id;
    ngx_pt_dist_t  *dist;
    ngx_pt_repo_t  *repo;

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_REPO_NAMES, &mi->repo, &id);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_record_load(pool, log, txn, &ngx_pt_repo_type, &id, &rec);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        repo = rec;

        if (rc == NGX_OK && repo->parent.len == mi->dist->meta.id.len
            && ngx_strncmp(repo->parent.data, mi->dist->meta.id.data,
                           repo->parent.len) == 0)
        {
            *repop = repo;
            return NGX_OK;
        }

        /*
         * Left by another pull-through distribution that had this path:
         * what it cached is not this one's to serve.
         */

        if (ngx_pt_content_delete_repo(pool, log, txn, &mi->repo) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    repo = ngx_pt_record_new(pool, &ngx_pt_repo_type);
    dist = ngx_pt_record_new(pool, &ngx_pt_dist_type);

    if (repo == NULL || dist == NULL
        || ngx_pt_uuid(pool, &repo->meta.id) != NGX_OK
        || ngx_pt_uuid(pool, &dist->meta.id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    repo->meta.created = *now;
    repo->meta.updated = *now;
    repo->name = mi->repo;
    repo->remote = mi->dist->remote;
    repo->parent = mi->dist->meta.id;
    repo->latest_version = 0;

    dist->meta.created = *now;
    dist->meta.updated = *now;
    dist->name = mi->repo;
    dist->base_path = mi->repo;
    dist->repository = repo->meta.id;
    dist->remote = mi->dist->remote;
    dist->parent = mi->dist->meta.id;
    dist->private = mi->dist->private;

    if (ngx_pt_record_save(pool, log, txn, &ngx_pt_repo_type, repo) != NGX_OK
        || ngx_pt_db_put(log, txn, NGX_PT_DB_REPO_NAMES, &repo->name,
                         &repo->meta.id) != NGX_OK
        || ngx_pt_record_save(pool, log, txn, &ngx_pt_dist_type, dist)
           != NGX_OK
        || ngx_pt_db_put(log, txn, NGX_PT_DB_DIST_PATHS, &dist->base_path,
                         &dist->meta.id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a name taken by a pull-through distribution stays with it */

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name, &id);

    if (rc == NGX_ERROR
        || (rc == NGX_DECLINED
            && ngx_pt_db_put(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name,
                             &dist->meta.id) != NGX_OK))
    {
        return NGX_ERROR;
    }

    /* version 0, empty, as Pulp makes with every repository */

    if (ngx_pt_content_version(pool, log, txn, repo, now, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    *repop = repo;

    return NGX_OK;
}


/*
 * A new version: what the repository's tags reach now. The previous one is
 * dropped (Pulp's pull-through repositories retain one version).
 */

static ngx_int_t
ngx_pt_content_version(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_repo_t *repo, ngx_str_t *now, ngx_uint_t initial)
{
    u_char             buf[NGX_PT_UUID_LEN + NGX_INT64_LEN + 2];
    yajl_gen           g;
    ngx_int_t          rc;
    ngx_str_t          key, val, *s;
    ngx_uint_t         i;
    ngx_keyval_t      *kv;
    ngx_pt_snapshot_t  snap;

    snap.pool = pool;
    snap.log = log;
    snap.txn = txn;
    snap.repo = repo->name;

    if (ngx_array_init(&snap.tags, pool, 8, sizeof(ngx_keyval_t)) != NGX_OK
        || ngx_array_init(&snap.manifests, pool, 8, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&snap.blobs, pool, 16, sizeof(ngx_str_t)) != NGX_OK
        || ngx_pt_content_snapshot(&snap) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the old version goes: one is retained */

    if (!initial) {
        key.data = buf;
        key.len = ngx_sprintf(buf, "%V/%010L", &repo->meta.id,
                              repo->latest_version) - buf;

        rc = ngx_pt_db_get(log, txn, NGX_PT_DB_VERSIONS, &key, &val);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK && ngx_pt_content_same(pool, &val, &snap)) {
            return NGX_OK;
        }

        if (ngx_pt_db_del(log, txn, NGX_PT_DB_VERSIONS, &key) == NGX_ERROR) {
            return NGX_ERROR;
        }

        repo->latest_version++;
    }

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "number");
    ngx_pt_json_int(g, repo->latest_version);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, now);

    ngx_pt_json_key(g, "tags");
    ngx_pt_json_map_open(g);
    kv = snap.tags.elts;
    for (i = 0; i < snap.tags.nelts; i++) {
        yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
        ngx_pt_json_str(g, &kv[i].value);
    }
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "manifests");
    ngx_pt_json_array_open(g);
    s = snap.manifests.elts;
    for (i = 0; i < snap.manifests.nelts; i++) {
        ngx_pt_json_str(g, &s[i]);
    }
    ngx_pt_json_array_close(g);

    ngx_pt_json_key(g, "blobs");
    ngx_pt_json_array_open(g);
    s = snap.blobs.elts;
    for (i = 0; i < snap.blobs.nelts; i++) {
        ngx_pt_json_str(g, &s[i]);
    }
    ngx_pt_json_array_close(g);

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, pool, &val) != NGX_OK) {
        return NGX_ERROR;
    }

    key.data = buf;
    key.len = ngx_sprintf(buf, "%V/%010L", &repo->meta.id,
                          repo->latest_version) - buf;

    repo->meta.updated = *now;

    if (ngx_pt_db_put(log, txn, NGX_PT_DB_VERSIONS, &key, &val) != NGX_OK
        || ngx_pt_record_save(pool, log, txn, &ngx_pt_repo_type, repo)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a tag of the repository: "<repo>\0<tag>" -> digest */

static ngx_int_t
ngx_pt_content_snapshot_tag(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_snapshot_t *s = data;

    size_t         skip;
    ngx_keyval_t  *kv;

    skip = s->repo.len + 1;

    kv = ngx_array_push(&s->tags);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    /* copies: LMDB's memory is valid only in the transaction */

    kv->key.len = key->len - skip;
    kv->key.data = ngx_pnalloc(s->pool, kv->key.len);
    kv->value.len = val->len;
    kv->value.data = ngx_pnalloc(s->pool, val->len);

    if (kv->key.data == NULL || kv->value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(kv->key.data, key->data + skip, kv->key.len);
    ngx_memcpy(kv->value.data, val->data, val->len);

    return ngx_pt_content_add_unique(&s->manifests, &kv->value);
}


static ngx_int_t
ngx_pt_content_snapshot(ngx_pt_snapshot_t *s)
{
    size_t         j;
    yajl_val       doc, list;
    ngx_str_t      prefix, key, val, err, *m, item;
    ngx_uint_t     i;

    if (ngx_pt_content_key(s->pool, &s->repo, NULL, &prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_pt_db_each_prefix(s->log, s->txn, NGX_PT_DB_TAGS, &prefix,
                              ngx_pt_content_snapshot_tag, s)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* manifests (and the children of indexes, when pulled), then blobs */

    for (i = 0; i < s->manifests.nelts; i++) {
        m = s->manifests.elts;
        item = m[i];

        if (ngx_pt_content_key(s->pool, &s->repo, &item, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_pt_db_get(s->log, s->txn, NGX_PT_DB_MANIFESTS, &key, &val)
            != NGX_OK)
        {
            continue;
        }

        doc = ngx_pt_json_parse(s->pool, &val, &err);

        list = ngx_pt_json_get(doc, "blobs");
        if (list && YAJL_IS_ARRAY(list)) {
            for (j = 0; j < list->u.array.len; j++) {
                if (!YAJL_IS_STRING(list->u.array.values[j])) {
                    continue;
                }

                item.data = (u_char *) list->u.array.values[j]->u.string;
                item.len = ngx_strlen(item.data);

                if (ngx_pt_content_add_unique(&s->blobs, &item) != NGX_OK) {
                    return NGX_ERROR;
                }
            }
        }

        list = ngx_pt_json_get(doc, "manifests");
        if (list && YAJL_IS_ARRAY(list)) {
            for (j = 0; j < list->u.array.len; j++) {
                if (!YAJL_IS_STRING(list->u.array.values[j])) {
                    continue;
                }

                item.data = (u_char *) list->u.array.values[j]->u.string;
                item.len = ngx_strlen(item.data);

                if (ngx_pt_content_key(s->pool, &s->repo, &item, &key)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (ngx_pt_db_get(s->log, s->txn, NGX_PT_DB_MANIFESTS, &key,
                                  &val) == NGX_OK
                    && ngx_pt_content_add_unique(&s->manifests, &item)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    return NGX_OK;
}


/* whether a stored version holds exactly what a snapshot holds */

static ngx_uint_t
ngx_pt_content_same(ngx_pool_t *pool, ngx_str_t *version, ngx_pt_snapshot_t *s)
{
    size_t         i, j;
    yajl_val       doc, tags, list;
    ngx_str_t      err, *items;
    ngx_array_t   *a;
    ngx_keyval_t  *kv;

    doc = ngx_pt_json_parse(pool, version, &err);
    tags = ngx_pt_json_get(doc, "tags");

    if (tags == NULL || !YAJL_IS_OBJECT(tags)
        || tags->u.object.len != s->tags.nelts)
    {
        return 0;
    }

    kv = s->tags.elts;

    for (i = 0; i < s->tags.nelts; i++) {
        for (j = 0; j < tags->u.object.len; j++) {
            if (kv[i].key.len == ngx_strlen(tags->u.object.keys[j])
                && ngx_strncmp(kv[i].key.data, tags->u.object.keys[j],
                               kv[i].key.len) == 0
                && YAJL_IS_STRING(tags->u.object.values[j])
                && kv[i].value.len
                   == ngx_strlen(tags->u.object.values[j]->u.string)
                && ngx_strncmp(kv[i].value.data,
                               tags->u.object.values[j]->u.string,
                               kv[i].value.len) == 0)
            {
                break;
            }
        }

        if (j == tags->u.object.len) {
            return 0;
        }
    }

    /* manifests and blobs follow from the tags, but for pulled children */

    for (a = &s->manifests; a; a = (a == &s->manifests) ? &s->blobs : NULL) {
        list = ngx_pt_json_get(doc, a == &s->manifests ? "manifests"
                                                       : "blobs");

        if (list == NULL || !YAJL_IS_ARRAY(list)
            || list->u.array.len != a->nelts)
        {
            return 0;
        }

        items = a->elts;

        for (i = 0; i < a->nelts; i++) {
            if (!YAJL_IS_STRING(list->u.array.values[i])
                || items[i].len
                   != ngx_strlen(list->u.array.values[i]->u.string)
                || ngx_strncmp(items[i].data,
                               list->u.array.values[i]->u.string,
                               items[i].len) != 0)
            {
                return 0;
            }
        }
    }

    return 1;
}


static ngx_int_t
ngx_pt_content_add_unique(ngx_array_t *a, ngx_str_t *v)
{
    ngx_str_t   *s;
    ngx_uint_t   i;

    s = a->elts;
    for (i = 0; i < a->nelts; i++) {
        if (s[i].len == v->len && ngx_strncmp(s[i].data, v->data, v->len) == 0)
        {
            return NGX_OK;
        }
    }

    s = ngx_array_push(a);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = *v;

    return NGX_OK;
}


/*
 * Sorted keys of db after "last", up to n (0: all): repository names
 * (prefix empty) or the tags of one repository.
 */

ngx_int_t
ngx_pt_content_list(ngx_pool_t *pool, ngx_log_t *log, ngx_uint_t db,
    ngx_str_t *prefix, ngx_str_t *last, ngx_uint_t n, ngx_array_t *out,
    ngx_uint_t *more)
{
    int          rc;
    size_t       plen;
    MDB_val      k, v;
    MDB_txn     *txn;
    ngx_str_t    start, *s;
    MDB_cursor  *cur;

    *more = 0;

    if (prefix->len) {
        if (ngx_pt_content_key(pool, prefix, last, &start) != NGX_OK) {
            return NGX_ERROR;
        }

        plen = prefix->len + 1;

    } else {
        start = *last;
        plen = 0;
    }

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mdb_cursor_open(txn, ngx_pt_store_dbi(db), &cur) != 0) {
        ngx_pt_txn_abort(txn);
        return NGX_ERROR;
    }

    k.mv_data = start.data;
    k.mv_size = start.len;

    rc = start.len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);

    for ( /* void */ ; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {

        if (plen && (k.mv_size < plen
                     || ngx_memcmp(k.mv_data, start.data, plen) != 0))
        {
            break;
        }

        /* strictly after "last" */
        if (last->len && k.mv_size == start.len
            && ngx_memcmp(k.mv_data, start.data, start.len) == 0)
        {
            continue;
        }

        if (n && out->nelts == n) {
            *more = 1;
            break;
        }

        s = ngx_array_push(out);
        if (s == NULL) {
            break;
        }

        s->len = k.mv_size - plen;
        s->data = ngx_pnalloc(pool, s->len);
        if (s->data == NULL) {
            break;
        }

        ngx_memcpy(s->data, (u_char *) k.mv_data + plen, s->len);
    }

    mdb_cursor_close(cur);
    ngx_pt_txn_abort(txn);

    return (rc == 0 || rc == MDB_NOTFOUND) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_pt_content_delete_range(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix)
{
    int          rc;
    MDB_val      k, v;
    MDB_cursor  *cur;

    if (mdb_cursor_open(txn, ngx_pt_store_dbi(db), &cur) != 0) {
        return NGX_ERROR;
    }

    for ( ;; ) {
        k.mv_data = prefix->data;
        k.mv_size = prefix->len;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0) {
            break;
        }

        if (k.mv_size < prefix->len
            || ngx_memcmp(k.mv_data, prefix->data, prefix->len) != 0)
        {
            break;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: deleting records failed: %s",
                      mdb_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


typedef struct {
    ngx_pool_t                 *pool;
    ngx_str_t                  *parent;
    ngx_array_t                *dists;       /* ngx_pt_dist_t * */
} ngx_pt_children_t;


static ngx_int_t
ngx_pt_content_child(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_children_t *ch = data;

    ngx_pt_dist_t  *dist, **p;

    if (ngx_pt_record_decode(ch->pool, &ngx_pt_dist_type, val,
                             (void **) &dist) != NGX_OK)
    {
        return NGX_OK;
    }

    if (dist->parent.len == ch->parent->len
        && ngx_strncmp(dist->parent.data, ch->parent->data, dist->parent.len)
           == 0)
    {
        p = ngx_array_push(ch->dists);
        if (p == NULL) {
            return NGX_ERROR;
        }

        *p = dist;
    }

    return NGX_OK;
}


/* the per-image distributions pulls made under a pull-through one */

ngx_array_t *
ngx_pt_content_children(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *parent_id)
{
    ngx_pt_children_t  ch;

    ch.pool = pool;
    ch.parent = parent_id;
    ch.dists = ngx_array_create(pool, 4, sizeof(ngx_pt_dist_t *));

    if (ch.dists == NULL
        || ngx_pt_db_each(log, txn, NGX_PT_DB_DISTS, ngx_pt_content_child, &ch)
           != NGX_OK)
    {
        return NULL;
    }

    return ch.dists;
}


/*
 * Deleting a pull-through distribution deletes what its pulls made: the
 * per-image distributions, their repositories, versions and content
 * records. Blob files stay, shared by digest (garbage collection is
 * another matter).
 */

ngx_int_t
ngx_pt_content_delete_dist(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *parent_id)
{
    ngx_uint_t       i;
    ngx_array_t     *children;
    ngx_pt_dist_t  **dists;

    children = ngx_pt_content_children(pool, log, txn, parent_id);
    if (children == NULL) {
        return NGX_ERROR;
    }

    dists = children->elts;

    for (i = 0; i < children->nelts; i++) {
        if (ngx_pt_content_delete_image(pool, log, txn, dists[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a per-image distribution, with its repository and what it recorded */

ngx_int_t
ngx_pt_content_delete_image(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_dist_t *dist)
{
    ngx_str_t  id;

    if (ngx_pt_db_del(log, txn, NGX_PT_DB_DISTS, &dist->meta.id) == NGX_ERROR
        || ngx_pt_db_del(log, txn, NGX_PT_DB_DIST_PATHS, &dist->base_path)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_db_get(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name, &id)
        == NGX_OK
        && id.len == dist->meta.id.len
        && ngx_strncmp(id.data, dist->meta.id.data, id.len) == 0
        && ngx_pt_db_del(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (dist->repository.len == 0) {
        return NGX_OK;
    }

    return ngx_pt_content_delete_records(pool, log, txn, &dist->base_path,
                                         &dist->repository);
}


/* a repository's records: itself, its name, versions and content */

static ngx_int_t
ngx_pt_content_delete_records(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *name, ngx_str_t *id)
{
    u_char     buf[NGX_PT_UUID_LEN + 2];
    ngx_str_t  prefix, key;

    if (id->len > NGX_PT_UUID_LEN
        || ngx_pt_content_key(pool, name, NULL, &key) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (id->len) {
        prefix.data = buf;
        prefix.len = ngx_sprintf(buf, "%V/", id) - buf;

        if (ngx_pt_db_del(log, txn, NGX_PT_DB_REPOS, id) == NGX_ERROR
            || ngx_pt_content_delete_range(log, txn, NGX_PT_DB_VERSIONS,
                                           &prefix) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_pt_db_del(log, txn, NGX_PT_DB_REPO_NAMES, name) == NGX_ERROR
        || ngx_pt_content_delete_range(log, txn, NGX_PT_DB_TAGS, &key)
           != NGX_OK
        || ngx_pt_content_delete_range(log, txn, NGX_PT_DB_MANIFESTS, &key)
           != NGX_OK
        || ngx_pt_content_delete_range(log, txn, NGX_PT_DB_BLOBS, &key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a repository and its distribution, found by name */

ngx_int_t
ngx_pt_content_delete_repo(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *name)
{
    void       *rec;
    ngx_int_t   rc;
    ngx_str_t   id;

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_DIST_PATHS, name, &id);

    if (rc == NGX_OK) {
        rc = ngx_pt_record_load(pool, log, txn, &ngx_pt_dist_type, &id, &rec);
        if (rc == NGX_OK) {
            return ngx_pt_content_delete_image(pool, log, txn, rec);
        }
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* no distribution: the repository alone */

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_REPO_NAMES, name, &id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&id);
    }

    return ngx_pt_content_delete_records(pool, log, txn, name, &id);
}
