
/*
 * ngx_pullthrough: Pulp's artifacts, read-only: the files the store holds
 * now, each a blob's or a manifest's bytes. An artifact's id is its
 * content unit's (the blob's, else the manifest's), so that an href leads
 * back to its digest through the units' index; an evicted file has no
 * artifact, as on-demand content in Pulp has none until it is fetched.
 * pulp-cli's "pulp show --href" reads any href through artifacts_read.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


typedef struct {
    ngx_pt_admin_t             *ctx;
    MDB_txn                    *txn;
    size_t                      count;
    ngx_int_t                   rc;
} ngx_pt_artifacts_t;


static ngx_int_t ngx_pt_admin_artifact_one(void *data, ngx_pt_file_t *f);
static ngx_int_t ngx_pt_admin_artifact_render(ngx_pt_admin_t *ctx,
    MDB_txn *txn, ngx_pt_file_t *f);
static ngx_int_t ngx_pt_admin_artifact_kind(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *digest, ngx_uint_t *kind);


static ngx_pt_admin_prop_t  ngx_pt_admin_artifact_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time?" },
    { "file", "string" },
    { "size", "integer" },
    { "md5", "string?" },
    { "sha1", "string?" },
    { "sha224", "string?" },
    { "sha256", "string?" },
    { "sha384", "string?" },
    { "sha512", "string?" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_artifact_params[] = {
    "ordering", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_artifact_api = {
    "artifacts", "artifact_href", "Artifact", "Artifacts",
    ngx_pt_admin_artifact_props, ngx_pt_admin_artifact_params,
    NULL, NULL, NULL, NULL, 0, 0
};


ngx_int_t
ngx_pt_admin_artifacts(ngx_pt_admin_t *ctx)
{
    MDB_txn             *txn;
    ngx_int_t            rc;
    ngx_uint_t           kind;
    ngx_pt_file_t        f;
    ngx_pt_unit_t        unit;
    ngx_pt_artifacts_t   w;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    if (ctx->id.len) {
        rc = NGX_DECLINED;

        for (kind = NGX_PT_UNIT_MANIFESTS;
             rc == NGX_DECLINED && kind <= NGX_PT_UNIT_BLOBS;
             kind++)
        {
            rc = ngx_pt_unit_find(ctx->pool, ctx->log, txn, kind, &ctx->id,
                                  &unit);
        }

        if (rc == NGX_OK) {
            rc = ngx_pt_file_get(ctx->log, txn, &unit.digest, &f);
        }

        if (rc == NGX_OK) {
            f.digest = unit.digest;
            rc = ngx_pt_admin_artifact_render(ctx, txn, &f);
            ctx->status = NGX_HTTP_OK;
        }

        ngx_pt_txn_abort(txn);

        if (rc == NGX_DECLINED) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        return rc == NGX_OK ? NGX_OK : ngx_pt_admin_store_error(ctx);
    }

    /* a page of the files, in the order of digests */

    w.ctx = ctx;
    w.txn = txn;
    w.count = 0;
    w.rc = NGX_OK;

    rc = ngx_pt_db_count(ctx->log, txn, NGX_PT_DB_FILES, &w.count);

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_page(ctx, w.count);
    }

    if (rc == NGX_OK) {
        w.count = 0;
        rc = ngx_pt_files_each(ctx->pool, ctx->log, txn,
                               ngx_pt_admin_artifact_one, &w);
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK || w.rc != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


/* a file of the walk: rendered if it is on the page; the walk stops after */

static ngx_int_t
ngx_pt_admin_artifact_one(void *data, ngx_pt_file_t *f)
{
    ngx_pt_artifacts_t *w = data;

    size_t  n;

    n = w->count++;

    if (n < (size_t) w->ctx->query.offset) {
        return NGX_OK;
    }

    if (n >= (size_t) (w->ctx->query.offset + w->ctx->query.limit)) {
        return NGX_DONE;
    }

    w->rc = ngx_pt_admin_artifact_render(w->ctx, w->txn, f);

    return w->rc == NGX_OK ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_pt_admin_artifact_render(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_file_t *f)
{
    u_char          buf[NGX_PT_HREF_LEN], id[NGX_PT_UUID_LEN];
    yajl_gen        g = ctx->g;
    ngx_int_t       rc;
    ngx_str_t       s;
    ngx_uint_t      kind, sha256;
    ngx_pt_unit_t   unit;

    rc = ngx_pt_admin_artifact_kind(ctx, txn, &f->digest, &kind);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_memzero(&unit, sizeof(ngx_pt_unit_t));
    unit.digest = f->digest;

    if (ngx_pt_unit_id(kind, &unit, id) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    s.data = buf;
    s.len = ngx_sprintf(buf, NGX_PT_API_ROOT "artifacts/%*s/",
                        (size_t) NGX_PT_UUID_LEN, id) - buf;
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &s);

    s.len = ngx_sprintf(buf, "prn:core.artifact:%*s",
                        (size_t) NGX_PT_UUID_LEN, id) - buf;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    ngx_pt_json_key(g, "pulp_created");
    ngx_pt_json_null(g);

    /* where the store keeps it, under its path: the digest names it */

    ngx_pt_json_key(g, "file");
    ngx_pt_json_str(g, &f->digest);
    ngx_pt_json_key(g, "size");
    ngx_pt_json_int(g, f->size);

    sha256 = (f->digest.len > 7
              && ngx_strncmp(f->digest.data, "sha256:", 7) == 0);

    ngx_pt_json_key(g, "md5");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "sha1");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "sha224");
    ngx_pt_json_null(g);

    ngx_pt_json_key(g, "sha256");

    if (sha256) {
        s.data = f->digest.data + 7;
        s.len = f->digest.len - 7;
        ngx_pt_json_str(g, &s);

    } else {
        ngx_pt_json_null(g);
    }

    ngx_pt_json_key(g, "sha384");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "sha512");

    if (!sha256 && f->digest.len > 7
        && ngx_strncmp(f->digest.data, "sha512:", 7) == 0)
    {
        s.data = f->digest.data + 7;
        s.len = f->digest.len - 7;
        ngx_pt_json_str(g, &s);

    } else {
        ngx_pt_json_null(g);
    }

    ngx_pt_json_map_close(g);

    return NGX_OK;
}


/* whose bytes a file is: a blob's, else a manifest's */

static ngx_int_t
ngx_pt_admin_artifact_kind(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *digest, ngx_uint_t *kind)
{
    ngx_int_t      rc;
    ngx_pt_unit_t  unit;

    *kind = NGX_PT_UNIT_BLOBS;

    rc = ngx_pt_unit_get(ctx->pool, ctx->log, txn, NGX_PT_UNIT_BLOBS, digest,
                         &unit);

    if (rc == NGX_DECLINED) {
        *kind = NGX_PT_UNIT_MANIFESTS;
        return NGX_OK;
    }

    return rc;
}
