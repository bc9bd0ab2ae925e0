
/*
 * ngx_pullthrough: what pulls record. A verified manifest is recorded in
 * one write transaction: the repository and its per-image distribution
 * when they are new, the manifest, the blobs it names (so that this
 * repository may serve them), the tag, and a new repository version when
 * what the tags reach has changed; the previous version is dropped, as
 * Pulp's pull-through repositories retain one. Keys and values are the
 * schema's (ngx_pt_schema.c); this file speaks in repositories, tags,
 * manifests and versions.
 */


#include <ngx_pt.h>
#include <ngx_pt_content.h>


/* what a repository's tags reach now: the content of its next version */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    MDB_txn                    *txn;
    ngx_str_t                   repo;
    ngx_pt_version_t            v;
} ngx_pt_snapshot_t;



static ngx_int_t ngx_pt_content_push(ngx_array_t *a, yajl_val v);
static ngx_int_t ngx_pt_content_blobs_named(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_manifest_info_t *mi);
static ngx_int_t ngx_pt_content_tag_move(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_manifest_info_t *mi);
static ngx_int_t ngx_pt_content_repo(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_manifest_info_t *mi, ngx_str_t *now,
    ngx_pt_repo_t **repop);
static ngx_int_t ngx_pt_content_repo_new(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_manifest_info_t *mi, ngx_str_t *now,
    ngx_pt_repo_t **repop);
static ngx_int_t ngx_pt_content_version(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_repo_t *repo, ngx_str_t *now, ngx_uint_t initial);
static ngx_int_t ngx_pt_content_snapshot(ngx_pt_snapshot_t *s);
static ngx_int_t ngx_pt_content_snapshot_tag(void *data, ngx_str_t *repo,
    ngx_str_t *tag, ngx_str_t *value);
static ngx_uint_t ngx_pt_content_same(ngx_pt_version_t *a,
    ngx_pt_version_t *b);
static ngx_uint_t ngx_pt_strings_same(ngx_array_t *a, ngx_array_t *b);
static ngx_int_t ngx_pt_content_add_unique(ngx_array_t *a, ngx_str_t *v);
static ngx_int_t ngx_pt_content_delete_under(ngx_pool_t *pool,
    ngx_log_t *log, MDB_txn *txn, ngx_str_t *base_path);
static ngx_int_t ngx_pt_content_name_of(void *data, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *value);
static ngx_int_t ngx_pt_content_delete_records(ngx_pool_t *pool,
    ngx_log_t *log, MDB_txn *txn, ngx_str_t *name, ngx_str_t *id);


/* the databases of what a repository's pulls recorded */
static ngx_uint_t  ngx_pt_content_dbs[] = {
    NGX_PT_DB_TAGS, NGX_PT_DB_MANIFESTS, NGX_PT_DB_BLOBS, NGX_PT_DB_REFERRERS
};


/* the digest a tag points at; with tag NULL, whether the repo exists */

ngx_int_t
ngx_pt_content_tag(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *tag, ngx_pt_tag_t *t)
{
    MDB_txn    *txn;
    ngx_int_t   rc;
    ngx_str_t   id;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tag) {
        rc = ngx_pt_tag_get(pool, log, txn, repo, tag, t);

    } else {
        rc = ngx_pt_index_get(log, txn, NGX_PT_DB_REPO_NAMES, repo, &id);
    }

    ngx_pt_txn_abort(txn);

    return rc;
}


/*
 * What a manifest request needs, in one read transaction: the tag (when
 * the reference is one), then the manifest's type and size. NGX_DECLINED:
 * the tag or the manifest is not recorded (t->digest.len tells which).
 */

ngx_int_t
ngx_pt_content_lookup(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *tag, ngx_str_t *digest, ngx_pt_tag_t *t,
    ngx_str_t *media_type, off_t *size)
{
    MDB_txn    *txn;
    ngx_int_t   rc;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = NGX_OK;
    t->digest.len = 0;

    if (tag) {
        rc = ngx_pt_tag_get(pool, log, txn, repo, tag, t);
        *digest = t->digest;
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_manifest_record_head(pool, log, txn, repo, digest,
                                         media_type, size);
    }

    ngx_pt_txn_abort(txn);

    return rc;
}


ngx_int_t
ngx_pt_content_manifest(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest, ngx_str_t *media_type, off_t *size)
{
    MDB_txn    *txn;
    ngx_int_t   rc;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    /* copied into the pool: valid after the transaction */

    rc = ngx_pt_manifest_record_head(pool, log, txn, repo, digest,
                                     media_type, size);

    ngx_pt_txn_abort(txn);

    return rc;
}


ngx_int_t
ngx_pt_content_blob_has(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest)
{
    off_t       size;
    MDB_txn    *txn;
    ngx_int_t   rc;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_blob_rec_get(pool, log, txn, repo, digest, &size);

    ngx_pt_txn_abort(txn);

    /*
     * Only a blob fetched for the repository, or confirmed by its upstream,
     * is the repository's: a manifest that merely names a digest (size -1)
     * does not make another repository's file readable here.
     */

    if (rc == NGX_OK && size < 0) {
        return NGX_DECLINED;
    }

    return rc;
}


/* a blob for repo, with what it says if it is an image config */

ngx_int_t
ngx_pt_content_blob_add(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *digest, off_t size, ngx_str_t *config)
{
    MDB_txn  *txn;

    if (ngx_pt_txn_begin(log, 1, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_pt_blob_rec_put(pool, log, txn, repo, digest, size) != NGX_OK
        || (size >= 0
            && ngx_pt_file_stored(log, txn, digest, size, ngx_pt_clock())
               != NGX_OK)
        || (config && config->len
            && ngx_pt_config_put(log, txn, digest, config) != NGX_OK))
    {
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
    size_t                  i;
    yajl_val                doc, v, item;
    ngx_str_t               in, err;
    ngx_pt_manifest_rec_t  *m;

    in.data = data;
    in.len = len;

    doc = ngx_pt_json_parse(pool, &in, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_ERROR;
    }

    m = &mi->rec;

    if (ngx_array_init(&m->blobs, pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&m->manifests, pool, 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_pt_json_get(doc, "mediaType");
    if (v && YAJL_IS_STRING(v)) {
        m->media_type.data = (u_char *) v->u.string;
        m->media_type.len = ngx_strlen(v->u.string);

        if (!ngx_pt_content_type_safe(&m->media_type)) {
            /* the default of its shape, below */
            m->media_type.len = 0;
        }
    }

    v = ngx_pt_json_get(ngx_pt_json_get(doc, "config"), "digest");
    if (ngx_pt_content_push(&m->blobs, v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (m->blobs.nelts) {
        /* the config, when the manifest names one, comes first */
        m->config = ((ngx_str_t *) m->blobs.elts)[0];
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

        if (ngx_pt_content_push(&m->blobs, item) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    v = ngx_pt_json_get(doc, "manifests");

    if (v && YAJL_IS_ARRAY(v) && m->media_type.len == 0) {
        ngx_str_set(&m->media_type, "application/vnd.oci.image.index.v1+json");
    }

    for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        item = ngx_pt_json_get(v->u.array.values[i], "digest");

        if (ngx_pt_content_push(&m->manifests, item) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (m->media_type.len == 0) {
        ngx_str_set(&m->media_type,
                    "application/vnd.oci.image.manifest.v1+json");
    }

    ngx_pt_manifest_read_nature(mi, doc);

    return NGX_OK;
}


/*
 * A manifest's type as clients may be served it: application/json or a
 * registry type (application/...+json, +prettyjws), never one a browser
 * would render (text/html from a lying upstream, on the admin API's
 * origin).
 */

ngx_uint_t
ngx_pt_content_type_safe(ngx_str_t *type)
{
    u_char      c;
    size_t      n;
    ngx_uint_t  i;

    n = sizeof("application/") - 1;

    if (type->len <= n
        || ngx_strncasecmp(type->data, (u_char *) "application/", n) != 0)
    {
        return 0;
    }

    for (i = n; i < type->len; i++) {
        c = ngx_tolower(type->data[i]);

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '.' || c == '-' || c == '+' || c == '_'))
        {
            return 0;
        }
    }

    if (type->len == sizeof("application/json") - 1) {
        return ngx_strncasecmp(type->data, (u_char *) "application/json",
                               type->len) == 0;
    }

    return (type->len > 5
            && ngx_strncasecmp(type->data + type->len - 5,
                               (u_char *) "+json", 5) == 0)
           || (type->len > 10
               && ngx_strncasecmp(type->data + type->len - 10,
                                  (u_char *) "+prettyjws", 10) == 0);
}


/*
 * The type a manifest is stored with: the upstream's Content-Type without
 * parameters, unless it is missing, application/json or not a registry
 * type; then the manifest's own (its mediaType, or its shape's).
 */

void
ngx_pt_content_media_type(ngx_pt_manifest_info_t *mi, ngx_str_t *upstream)
{
    u_char     *p;
    ngx_str_t   t;

    t = *upstream;

    p = ngx_strlchr(t.data, t.data + t.len, ';');
    if (p) {
        t.len = p - t.data;
    }

    while (t.len && t.data[t.len - 1] == ' ') {
        t.len--;
    }

    if (ngx_pt_content_type_safe(&t)
        && !(t.len == 16
             && ngx_strncasecmp(t.data, (u_char *) "application/json", 16)
                == 0))
    {
        mi->rec.media_type = t;
    }
}


/*
 * Records a verified manifest, in one write transaction. A new version
 * follows when what the tags reach changed: a new or moved tag, or the
 * child manifest of a tagged index pulled by digest. The same tag at the
 * same digest changes nothing.
 */

ngx_int_t
ngx_pt_content_manifest_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi)
{
    MDB_txn        *txn;
    ngx_str_t       now;
    ngx_pt_repo_t  *repo;

    if (ngx_pt_now(pool, &now) != NGX_OK
        || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    mi->rec.created = now;

    ngx_pt_manifest_nature(mi);

    if (ngx_pt_content_repo(pool, log, txn, mi, &now, &repo) != NGX_OK
        || ngx_pt_manifest_put(pool, log, txn, &mi->repo, &mi->digest,
                               &mi->rec) != NGX_OK
        || ngx_pt_file_stored(log, txn, &mi->digest, mi->rec.size,
                              ngx_pt_clock()) != NGX_OK
        || ngx_pt_content_blobs_named(pool, log, txn, mi) != NGX_OK
        || ngx_pt_content_tag_move(pool, log, txn, mi) != NGX_OK
        || (!mi->no_version
            && ngx_pt_content_version(pool, log, txn, repo, &now, 0)
               != NGX_OK))
    {
        ngx_pt_txn_abort(txn);
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: manifest %V of \"%V\" recorded, "
                   "version %L", &mi->digest, &mi->repo,
                   repo->latest_version);

    return ngx_pt_txn_commit(log, txn);
}


/*
 * The version of what the tags reach now, after manifests recorded with
 * no_version (an index and the children fetched for it): one version for
 * all of them, none when nothing changed.
 */

ngx_int_t
ngx_pt_content_version_update(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi)
{
    MDB_txn        *txn;
    ngx_str_t       now;
    ngx_pt_repo_t  *repo;

    if (ngx_pt_now(pool, &now) != NGX_OK
        || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_content_repo(pool, log, txn, mi, &now, &repo) != NGX_OK
        || ngx_pt_content_version(pool, log, txn, repo, &now, 0) != NGX_OK)
    {
        ngx_pt_txn_abort(txn);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: \"%V\" at version %L",
                   &mi->repo, repo->latest_version);

    return ngx_pt_txn_commit(log, txn);
}


/* the blobs a manifest names, known to the repo with no size yet */

static ngx_int_t
ngx_pt_content_blobs_named(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_manifest_info_t *mi)
{
    ngx_int_t    rc;
    ngx_str_t   *s;
    ngx_uint_t   i;

    s = mi->rec.blobs.elts;

    for (i = 0; i < mi->rec.blobs.nelts; i++) {
        rc = ngx_pt_blob_rec_get(pool, log, txn, &mi->repo, &s[i], NULL);

        if (rc == NGX_ERROR
            || (rc == NGX_DECLINED
                && ngx_pt_blob_rec_put(pool, log, txn, &mi->repo, &s[i], -1)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_content_tag_move(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_manifest_info_t *mi)
{
    ngx_int_t     rc;
    ngx_pt_tag_t  old, t;

    if (mi->tag.len == 0) {
        return NGX_OK;
    }

    rc = ngx_pt_tag_get(pool, log, txn, &mi->repo, &mi->tag, &old);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED || old.digest.len != mi->digest.len
        || ngx_strncmp(old.digest.data, mi->digest.data, old.digest.len) != 0)
    {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "pullthrough content: tag \"%V:%V\" now at %V",
                       &mi->repo, &mi->tag, &mi->digest);
    }

    /* fetched from the upstream just now: confirmed as of now */

    t.digest = mi->digest;
    t.checked = ngx_pt_clock();

    return ngx_pt_tag_put(pool, log, txn, &mi->repo, &mi->tag, &t);
}


/*
 * The upstream confirmed that the tag is still at digest: its checked time
 * moves on. NGX_DECLINED when the tag is no longer at digest (moved by a
 * pull in the meantime) or gone: nothing is written.
 */

ngx_int_t
ngx_pt_content_tag_confirm(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *tag, ngx_str_t *digest)
{
    MDB_txn       *txn;
    ngx_int_t      rc;
    ngx_pt_tag_t   t;

    if (ngx_pt_txn_begin(log, 1, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_tag_get(pool, log, txn, repo, tag, &t);

    if (rc == NGX_OK
        && (t.digest.len != digest->len
            || ngx_strncmp(t.digest.data, digest->data, digest->len) != 0))
    {
        rc = NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return rc;
    }

    t.checked = ngx_pt_clock();

    if (ngx_pt_tag_put(pool, log, txn, repo, tag, &t) != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: tag \"%V:%V\" confirmed",
                   repo, tag);

    return ngx_pt_txn_commit(log, txn);
}


/* the repository of a pull, made with its distribution on first use */

static ngx_int_t
ngx_pt_content_repo(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_manifest_info_t *mi, ngx_str_t *now, ngx_pt_repo_t **repop)
{
    void           *rec;
    ngx_int_t       rc;
    ngx_str_t       id;
    ngx_pt_repo_t  *repo;

    rc = ngx_pt_index_get(log, txn, NGX_PT_DB_REPO_NAMES, &mi->repo, &id);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_pt_content_repo_new(pool, log, txn, mi, now, repop);
    }

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
     * Left by another pull-through distribution that had this path: what
     * it cached is not this one's to serve.
     */

    if (ngx_pt_content_delete_repo(pool, log, txn, &mi->repo) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_content_repo_new(pool, log, txn, mi, now, repop);
}


static ngx_int_t
ngx_pt_content_repo_new(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_manifest_info_t *mi, ngx_str_t *now, ngx_pt_repo_t **repop)
{
    ngx_int_t       rc;
    ngx_str_t       id;
    ngx_pt_dist_t  *dist;
    ngx_pt_repo_t  *repo;

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
        || ngx_pt_index_put(log, txn, NGX_PT_DB_REPO_NAMES, &repo->name,
                            &repo->meta.id) != NGX_OK
        || ngx_pt_record_save(pool, log, txn, &ngx_pt_dist_type, dist)
           != NGX_OK
        || ngx_pt_index_put(log, txn, NGX_PT_DB_DIST_PATHS, &dist->base_path,
                            &dist->meta.id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a name taken by a pull-through distribution stays with it */

    rc = ngx_pt_index_get(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name, &id);

    if (rc == NGX_ERROR
        || (rc == NGX_DECLINED
            && ngx_pt_index_put(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name,
                                &dist->meta.id) != NGX_OK))
    {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: repository \"%V\" created, id %V",
                   &repo->name, &repo->meta.id);

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
    ngx_int_t          rc;
    ngx_pt_version_t   old;
    ngx_pt_snapshot_t  snap;

    snap.pool = pool;
    snap.log = log;
    snap.txn = txn;
    snap.repo = repo->name;

    if (ngx_pt_content_snapshot(&snap) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!initial) {
        rc = ngx_pt_version_get(pool, log, txn, &repo->meta.id,
                                repo->latest_version, &old);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK && ngx_pt_content_same(&old, &snap.v)) {
            return NGX_OK;
        }

        /* the old version goes: one is retained */

        if (ngx_pt_version_delete(log, txn, &repo->meta.id,
                                  repo->latest_version) == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        repo->latest_version++;
    }

    snap.v.number = repo->latest_version;
    snap.v.created = *now;
    repo->meta.updated = *now;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: \"%V\" version %L",
                   &repo->name, repo->latest_version);

    if (ngx_pt_version_put(pool, log, txn, &repo->meta.id, &snap.v) != NGX_OK
        || ngx_pt_record_save(pool, log, txn, &ngx_pt_repo_type, repo)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* tags, then the manifests they reach (and pulled children), then blobs */

static ngx_int_t
ngx_pt_content_snapshot(ngx_pt_snapshot_t *s)
{
    ngx_int_t               rc;
    ngx_str_t              *m, *d, item;
    ngx_uint_t              i, j;
    ngx_pt_manifest_rec_t   rec;

    if (ngx_array_init(&s->v.tags, s->pool, 8, sizeof(ngx_keyval_t))
           != NGX_OK
        || ngx_array_init(&s->v.manifests, s->pool, 8, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&s->v.blobs, s->pool, 16, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_pt_items_each(s->pool, s->log, s->txn, NGX_PT_DB_TAGS,
                             &s->repo, ngx_pt_content_snapshot_tag, s)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the array grows while it is walked: children follow their index */

    for (i = 0; i < s->v.manifests.nelts; i++) {
        m = s->v.manifests.elts;
        item = m[i];

        rc = ngx_pt_manifest_get(s->pool, s->log, s->txn, &s->repo, &item,
                                 &rec);
        if (rc != NGX_OK) {
            continue;
        }

        d = rec.blobs.elts;
        for (j = 0; j < rec.blobs.nelts; j++) {
            if (ngx_pt_content_add_unique(&s->v.blobs, &d[j]) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        d = rec.manifests.elts;
        for (j = 0; j < rec.manifests.nelts; j++) {
            rc = ngx_pt_manifest_get(s->pool, s->log, s->txn, &s->repo, &d[j],
                                     NULL);

            if (rc == NGX_OK
                && ngx_pt_content_add_unique(&s->v.manifests, &d[j])
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_content_snapshot_tag(void *data, ngx_str_t *repo, ngx_str_t *tag,
    ngx_str_t *value)
{
    ngx_pt_snapshot_t *s = data;

    ngx_keyval_t  *kv;
    ngx_pt_tag_t   t;

    if (ngx_pt_tag_decode(value, &t) != NGX_OK) {
        return NGX_OK;
    }

    kv = ngx_array_push(&s->v.tags);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    /* copies: LMDB's memory is valid only in the transaction */

    kv->key.len = tag->len;
    kv->key.data = ngx_pstrdup(s->pool, tag);
    kv->value.len = t.digest.len;
    kv->value.data = ngx_pstrdup(s->pool, &t.digest);

    if (kv->key.data == NULL || kv->value.data == NULL) {
        return NGX_ERROR;
    }

    return ngx_pt_content_add_unique(&s->v.manifests, &kv->value);
}


/* whether two versions hold the same tags, manifests and blobs */

static ngx_uint_t
ngx_pt_content_same(ngx_pt_version_t *a, ngx_pt_version_t *b)
{
    ngx_uint_t     i, j;
    ngx_keyval_t  *ka, *kb;

    if (a->tags.nelts != b->tags.nelts) {
        return 0;
    }

    ka = a->tags.elts;
    kb = b->tags.elts;

    for (i = 0; i < a->tags.nelts; i++) {
        for (j = 0; j < b->tags.nelts; j++) {
            if (ka[i].key.len == kb[j].key.len
                && ngx_strncmp(ka[i].key.data, kb[j].key.data, ka[i].key.len)
                   == 0)
            {
                break;
            }
        }

        if (j == b->tags.nelts
            || ka[i].value.len != kb[j].value.len
            || ngx_strncmp(ka[i].value.data, kb[j].value.data,
                           ka[i].value.len) != 0)
        {
            return 0;
        }
    }

    /* manifests and blobs follow from the tags, but for pulled children */

    return ngx_pt_strings_same(&a->manifests, &b->manifests)
           && ngx_pt_strings_same(&a->blobs, &b->blobs);
}


static ngx_uint_t
ngx_pt_strings_same(ngx_array_t *a, ngx_array_t *b)
{
    ngx_str_t   *sa, *sb;
    ngx_uint_t   i;

    if (a->nelts != b->nelts) {
        return 0;
    }

    sa = a->elts;
    sb = b->elts;

    for (i = 0; i < a->nelts; i++) {
        if (sa[i].len != sb[i].len
            || ngx_strncmp(sa[i].data, sb[i].data, sa[i].len) != 0)
        {
            return 0;
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
 * Sorted names after "last", up to n (0: all): of the repositories (repo
 * NULL, the catalog) or of one repository's tags.
 */

ngx_int_t
ngx_pt_content_names(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *repo,
    ngx_str_t *last, ngx_uint_t n, ngx_array_t *out, ngx_uint_t *more)
{
    MDB_txn    *txn;
    ngx_int_t   rc;

    *more = 0;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (repo == NULL) {
        rc = ngx_pt_index_list(pool, log, txn, NGX_PT_DB_REPO_NAMES, last, n,
                               out, more);

    } else {
        rc = ngx_pt_items_list(pool, log, txn, NGX_PT_DB_TAGS, repo, last, n,
                               out, more);
    }

    ngx_pt_txn_abort(txn);

    return rc;
}


/*
 * The ids of the per-image distributions pulls made under a pull-through
 * one: each record is read in a pool of its own, so the walk costs the ids
 * it returns, not every distribution decoded.
 */

ngx_array_t *
ngx_pt_content_children(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *parent_id)
{
    ngx_array_t  *ids;

    /* by the children index: the cost of this one's children alone */

    ids = ngx_array_create(pool, 4, sizeof(ngx_str_t));

    if (ids == NULL
        || ngx_pt_children_list(pool, log, txn, parent_id, NGX_MAX_INT_T_VALUE,
                                ids)
           != NGX_OK)
    {
        return NULL;
    }

    return ids;
}


/*
 * Deleting a pull-through distribution, or moving it to another base path,
 * deletes what its pulls made under base_path: the per-image
 * distributions, their repositories, versions and content records, then
 * the records of repositories that have no per-image distribution. Blob
 * files stay, shared by digest (garbage collection is another matter).
 */

ngx_int_t
ngx_pt_content_delete_dist(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *parent_id, ngx_str_t *base_path)
{
    void        *rec;
    ngx_int_t    rc;
    ngx_str_t   *ids;
    ngx_uint_t   i;
    ngx_array_t *children;

    children = ngx_pt_content_children(pool, log, txn, parent_id);
    if (children == NULL) {
        return NGX_ERROR;
    }

    ids = children->elts;

    for (i = 0; i < children->nelts; i++) {
        rc = ngx_pt_record_load(pool, log, txn, &ngx_pt_dist_type, &ids[i],
                                &rec);
        if (rc == NGX_ERROR
            || (rc == NGX_OK
                && ngx_pt_content_delete_image(pool, log, txn, rec)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    return ngx_pt_content_delete_under(pool, log, txn, base_path);
}


/*
 * Repositories under base_path that pulls recorded content for without a
 * manifest, hence without a repository record or a per-image
 * distribution: blobs asked for before any manifest of their repository
 * (as every node of a cluster keyed by digest is asked), referrers asked
 * for alone. Their names are collected first (a walk's cursor must not
 * see the deletions), each once per database: items are sorted by
 * repository.
 */

static ngx_int_t
ngx_pt_content_delete_under(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *base_path)
{
    ngx_str_t     prefix, empty, *name;
    ngx_uint_t    i;
    ngx_array_t   names;

    prefix.len = base_path->len + 1;
    prefix.data = ngx_pnalloc(pool, prefix.len);

    if (prefix.data == NULL
        || ngx_array_init(&names, pool, 8, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(prefix.data, base_path->data, base_path->len);
    prefix.data[base_path->len] = '/';

    for (i = 0; i < sizeof(ngx_pt_content_dbs) / sizeof(ngx_uint_t); i++) {
        if (ngx_pt_items_under(pool, log, txn, ngx_pt_content_dbs[i],
                               &prefix, ngx_pt_content_name_of, &names)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_str_null(&empty);
    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        if (ngx_pt_content_delete_records(pool, log, txn, &name[i], &empty)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* an item's repository, copied unless it is the last one collected */

static ngx_int_t
ngx_pt_content_name_of(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_array_t *names = data;

    ngx_str_t  *last, *s;

    last = names->nelts ? (ngx_str_t *) names->elts + names->nelts - 1
                        : NULL;

    if (last && last->len == repo->len
        && ngx_strncmp(last->data, repo->data, repo->len) == 0)
    {
        return NGX_OK;
    }

    s = ngx_array_push(names);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->len = repo->len;
    s->data = ngx_pstrdup(names->pool, repo);

    return s->data ? NGX_OK : NGX_ERROR;
}


/* a per-image distribution, with its repository and what it recorded */

ngx_int_t
ngx_pt_content_delete_image(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_dist_t *dist)
{
    ngx_int_t  rc;
    ngx_str_t  id;

    if (ngx_pt_record_delete(log, txn, &ngx_pt_dist_type, &dist->meta.id)
        == NGX_ERROR
        || ngx_pt_index_del(log, txn, NGX_PT_DB_DIST_PATHS, &dist->base_path)
           == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_index_get(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name, &id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && id.len == dist->meta.id.len
        && ngx_strncmp(id.data, dist->meta.id.data, id.len) == 0
        && ngx_pt_index_del(log, txn, NGX_PT_DB_DIST_NAMES, &dist->name)
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
    ngx_uint_t  i;

    if (id->len
        && (ngx_pt_record_delete(log, txn, &ngx_pt_repo_type, id) == NGX_ERROR
            || ngx_pt_versions_delete(log, txn, id) != NGX_OK))
    {
        return NGX_ERROR;
    }

    if (ngx_pt_index_del(log, txn, NGX_PT_DB_REPO_NAMES, name) == NGX_ERROR) {
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(ngx_pt_content_dbs) / sizeof(ngx_uint_t); i++) {
        if (ngx_pt_items_delete(pool, log, txn, ngx_pt_content_dbs[i], name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough content: repository \"%V\" deleted", name);

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

    rc = ngx_pt_index_get(log, txn, NGX_PT_DB_DIST_PATHS, name, &id);

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

    rc = ngx_pt_index_get(log, txn, NGX_PT_DB_REPO_NAMES, name, &id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&id);

    } else {
        /* deleting the name frees LMDB's copy of the id: keep one */
        id.data = ngx_pstrdup(pool, &id);
        if (id.data == NULL) {
            return NGX_ERROR;
        }
    }

    return ngx_pt_content_delete_records(pool, log, txn, name, &id);
}
