
/*
 * ngx_pullthrough: what pulls record: repositories, their versions, tags,
 * manifests and blobs (ngx_pt_content.c).
 */


#ifndef _NGX_PT_CONTENT_H_INCLUDED_
#define _NGX_PT_CONTENT_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_schema.h>


/* a verified manifest, to record */
typedef struct {
    ngx_str_t                   repo;        /* <base_path>/<name> */
    ngx_pt_dist_t              *dist;        /* the pull-through one */
    ngx_str_t                   tag;         /* empty: pulled by digest */
    ngx_str_t                   digest;
    ngx_pt_manifest_rec_t       rec;         /* media type, size, digests */
    ngx_uint_t                  no_version;  /* the version comes later */

    /* what its JSON tells of its nature (Pulp's type), read by
     * ngx_pt_content_parse_manifest() once its media type is final */
    ngx_str_t                   config_type; /* config.mediaType */
    ngx_str_t                   cosign_type; /* a layer's cosign type */
    ngx_uint_t                  artifact;    /* has an artifactType */
    ngx_uint_t                  bootc;       /* containers.bootc = "1" */
} ngx_pt_manifest_info_t;


#define NGX_PT_CONFIG_MAX_SIZE      (1024 * 1024)  /* config blobs read */


ngx_int_t ngx_pt_content_tag(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *tag, ngx_pt_tag_t *t);
ngx_int_t ngx_pt_content_tag_confirm(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *tag, ngx_str_t *digest);
ngx_int_t ngx_pt_content_lookup(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *tag, ngx_str_t *digest, ngx_pt_tag_t *t,
    ngx_str_t *media_type, off_t *size);
ngx_int_t ngx_pt_content_manifest(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest, ngx_str_t *media_type, off_t *size);
ngx_int_t ngx_pt_content_blob_has(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest);
ngx_int_t ngx_pt_content_blob_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest, off_t size, ngx_str_t *config);
ngx_int_t ngx_pt_content_parse_manifest(ngx_pool_t *pool,
    ngx_pt_manifest_info_t *mi, u_char *data, size_t len);
ngx_uint_t ngx_pt_content_type_safe(ngx_str_t *type);
ngx_int_t ngx_pt_config_read(ngx_pool_t *pool, ngx_log_t *log, ngx_fd_t fd,
    off_t size, ngx_str_t *value);
void ngx_pt_manifest_read_nature(ngx_pt_manifest_info_t *mi, yajl_val doc);
void ngx_pt_manifest_nature(ngx_pt_manifest_info_t *mi);
ngx_uint_t ngx_pt_manifest_is_index(ngx_str_t *media_type);
void ngx_pt_content_media_type(ngx_pt_manifest_info_t *mi,
    ngx_str_t *upstream);
ngx_int_t ngx_pt_content_manifest_add(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi);
ngx_int_t ngx_pt_content_version_update(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_manifest_info_t *mi);
ngx_int_t ngx_pt_content_names(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *last, ngx_uint_t n, ngx_array_t *out,
    ngx_uint_t *more);

ngx_array_t *ngx_pt_content_children(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *parent_id);
ngx_int_t ngx_pt_content_delete_dist(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *parent_id, ngx_str_t *base_path);
ngx_int_t ngx_pt_content_delete_repo(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *name);
ngx_int_t ngx_pt_content_delete_image(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_dist_t *dist);


#endif /* _NGX_PT_CONTENT_H_INCLUDED_ */
