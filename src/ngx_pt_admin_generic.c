
/*
 * ngx_pullthrough: two views that Pulp has and the records here make
 * without a type of their own. Pulp's generic /distributions/ lists the
 * distributions of every type, pull-through and per-image, in the shape
 * that every distribution shares. The per-image remotes that Pulp makes on
 * a first pull (/remotes/container/container/, named <base_path>/<name>)
 * are, here, read-only views of the pull-through remote's live settings:
 * one per per-image distribution, under its id, so that nothing is stored
 * for them and an edit of the pull-through remote shows at once.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>
#include <ngx_pt_settings.h>


/* what every distribution shows in Pulp's generic list */

static const char  *ngx_pt_admin_distribution_fields[] = {
    "base_path", "content_guard", "hidden", "pulp_labels", "name",
    "repository", NULL
};

static ngx_pt_admin_prop_t  ngx_pt_admin_distribution_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time" },
    { "pulp_last_updated", "date-time" },
    { "base_path", "string" },
    { "content_guard", "uri?" },
    { "hidden", "boolean" },
    { "pulp_labels", "object" },
    { "name", "string" },
    { "repository", "uri?" },
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_distributions_api = {
    "distributions", NULL, "Distribution", "Distributions",
    ngx_pt_admin_distribution_props, NULL, NULL, NULL, NULL, NULL, 0, 0
};


/* a per-image remote: the pull-through remote's fields and these */

static ngx_pt_admin_prop_t  ngx_pt_admin_image_remote_props[] = {
    { "upstream_name", "string" },
    { "include_tags", "array?" },
    { "exclude_tags", "array?" },
    { "sigstore", "string?" },
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_image_remote_api = {
    "remotes_container_container", "container_container_remote_href",
    "container.ContainerRemote", "Remotes: Container",
    ngx_pt_admin_image_remote_props, NULL, NULL, NULL, NULL,
    &ngx_pt_remote_type, 0, 0
};

/* its href and PRN; no records of its own, so no fields */

static ngx_pt_field_t  ngx_pt_image_remote_fields[] = {
    { NULL, 0, 0, 0, NULL, 0, 0, NULL }
};

static ngx_pt_type_t  ngx_pt_image_remote_type = {
    "remote", "remotes/container/container/", "container.containerremote",
    ngx_pt_image_remote_fields, sizeof(ngx_pt_dist_t), NULL
};


static ngx_int_t ngx_pt_admin_upstream_name(ngx_pt_admin_t *ctx,
    MDB_txn *txn, ngx_pt_dist_t *dist, ngx_pt_remote_t *remote,
    ngx_str_t *name);


/* a distribution of either type, as Pulp's generic list shows it */

ngx_int_t
ngx_pt_admin_render_distribution(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec)
{
    const char  **name;

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_record_render_meta(ctx->g, ctx->type, rec);

    for (name = ngx_pt_admin_distribution_fields; *name; name++) {
        ngx_pt_record_render_field(ctx->g, ctx->type, rec, *name);
    }

    ngx_pt_json_map_close(ctx->g);

    return NGX_OK;
}


/* the href of a per-image distribution's remote; buf: NGX_PT_HREF_LEN */

void
ngx_pt_admin_image_remote_href(ngx_pt_dist_t *dist, u_char *buf,
    ngx_str_t *href)
{
    ngx_pt_record_href(&ngx_pt_image_remote_type, &dist->meta.id, buf, href);
}


/*
 * A per-image remote, from its distribution: named as it is, with the
 * pull-through remote's settings now and the name asked of the upstream.
 * It changed last when either of them did.
 */

ngx_int_t
ngx_pt_admin_render_image_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec)
{
    void             *r;
    ngx_int_t         rc;
    ngx_str_t         upstream;
    ngx_pt_meta_t     meta;
    ngx_pt_dist_t    *dist = rec;
    ngx_pt_remote_t  *remote;

    remote = NULL;

    if (dist->remote.len) {
        rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, &ngx_pt_remote_type,
                                &dist->remote, &r);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        remote = (rc == NGX_OK) ? r : NULL;
    }

    meta = dist->meta;

    if (remote && ngx_memn2cmp(remote->meta.updated.data, meta.updated.data,
                               remote->meta.updated.len, meta.updated.len)
                  > 0)
    {
        meta.updated = remote->meta.updated;
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_record_render_meta(ctx->g, &ngx_pt_image_remote_type, &meta);

    ngx_pt_json_key(ctx->g, "name");
    ngx_pt_json_str(ctx->g, &dist->name);

    if (remote) {
        ngx_pt_record_render_fields(ctx->g, &ngx_pt_remote_type, remote,
                                    "name");
    }

    if (ngx_pt_admin_upstream_name(ctx, txn, dist, remote, &upstream)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_pt_json_key(ctx->g, "upstream_name");
    ngx_pt_json_str(ctx->g, &upstream);
    ngx_pt_json_key(ctx->g, "include_tags");
    ngx_pt_json_null(ctx->g);
    ngx_pt_json_key(ctx->g, "exclude_tags");
    ngx_pt_json_null(ctx->g);
    ngx_pt_json_key(ctx->g, "sigstore");
    ngx_pt_json_null(ctx->g);

    ngx_pt_json_map_close(ctx->g);

    return NGX_OK;
}


/* <name> of <base_path>/<name>: what follows the parent's base path,
 * after the prefix of the remote's url if it has one */

static ngx_int_t
ngx_pt_admin_upstream_name(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_dist_t *dist, ngx_pt_remote_t *remote, ngx_str_t *name)
{
    u_char         *p;
    void           *rec;
    ngx_str_t       prefix;
    ngx_pt_dist_t  *parent;

    *name = dist->name;

    if (dist->parent.len == 0
        || ngx_pt_record_load(ctx->pool, ctx->log, txn, &ngx_pt_pt_dist_type,
                              &dist->parent, &rec)
           != NGX_OK)
    {
        return NGX_OK;
    }

    parent = rec;

    if (name->len > parent->base_path.len + 1
        && ngx_strncmp(name->data, parent->base_path.data,
                       parent->base_path.len) == 0
        && name->data[parent->base_path.len] == '/')
    {
        name->data += parent->base_path.len + 1;
        name->len -= parent->base_path.len + 1;
    }

    if (remote == NULL) {
        return NGX_OK;
    }

    ngx_pt_settings_prefix(remote, &prefix);

    if (prefix.len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(ctx->pool, prefix.len + 1 + name->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    name->len = ngx_sprintf(p, "%V/%V", &prefix, name) - p;
    name->data = p;

    return NGX_OK;
}
