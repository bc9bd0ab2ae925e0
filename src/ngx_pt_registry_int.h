
/*
 * ngx_pullthrough: what the parts of the registry API share: the state of
 * a /v2/ request and the helpers that answer it (ngx_pt_registry.c), used
 * by the manifest side (ngx_pt_manifest.c).
 */


#ifndef _NGX_PT_REGISTRY_INT_H_INCLUDED_
#define _NGX_PT_REGISTRY_INT_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_fetch.h>
#include <ngx_pt_fill.h>
#include <ngx_pt_settings.h>
#include <ngx_pt_schema.h>
#include <ngx_pt_shm.h>
#include <ngx_pt_flight.h>
#include <ngx_pt_content.h>
#include <ngx_pt_metrics.h>


#define NGX_PT_REQ_BASE       0
#define NGX_PT_REQ_CATALOG    1
#define NGX_PT_REQ_TAGS       2
#define NGX_PT_REQ_MANIFEST   3
#define NGX_PT_REQ_BLOB       4
#define NGX_PT_REQ_REFERRERS  5

/* $pullthrough_cache_status, by index */
#define NGX_PT_CACHE_HIT          1
#define NGX_PT_CACHE_MISS         2
#define NGX_PT_CACHE_JOIN         3
#define NGX_PT_CACHE_REVALIDATED  4
#define NGX_PT_CACHE_ERROR        5
#define NGX_PT_CACHE_STALE        6
#define NGX_PT_CACHE_UPDATING     7
#define NGX_PT_CACHE_EXPIRED      8

#define NGX_PT_MANIFEST_TYPES                                                 \
    "application/vnd.oci.image.index.v1+json, "                               \
    "application/vnd.oci.image.manifest.v1+json, "                            \
    "application/vnd.docker.distribution.manifest.list.v2+json, "             \
    "application/vnd.docker.distribution.manifest.v2+json"


typedef struct ngx_pt_index_s  ngx_pt_index_t;


typedef struct {
    ngx_uint_t                  kind;
    ngx_str_t                   repo;        /* the path: <base_path>/<name> */
    ngx_str_t                   name;        /* upstream repository name */
    ngx_str_t                   referrers;   /* the stored index, if any */
    uint64_t                    referrers_at;
    ngx_str_t                   asked;       /* the name in the path, when
                                                it names no base_path (a
                                                mirror's request) */
    ngx_str_t                   reference;
    ngx_pt_digest_t             digest;
    ngx_uint_t                  by_digest;
    ngx_pt_dist_t              *dist;
    ngx_pt_remote_t            *remote;
    ngx_pt_settings_t          *settings;    /* made at the first exchange */
    ngx_uint_t                  cache_status;
    ngx_uint_t                  follow;      /* another repository's fill */
    ngx_pt_fetch_t             *fetch;
    ngx_pt_reader_t            *reader;
    void                      (*next)(ngx_http_request_t *r);

    /* manifests (ngx_pt_manifest.c) */
    ngx_pt_tag_t                tag;         /* the cached tag */
    ngx_str_t                   type;        /* the cached manifest's */
    off_t                       size;
    ngx_str_t                   path;
    ngx_pt_flight_t             flight;      /* <repo>\0<reference> */
    ngx_event_t                 wait;        /* for the flight */
    ngx_event_t                 bg;          /* the check after the answer */
    ngx_http_request_t         *request;
    const char                 *refusal;     /* why a manifest was not
                                                stored */
    ngx_pt_index_t             *index;       /* the children of an index */

    unsigned                    cached:1;
    unsigned                    waited:1;
    unsigned                    revalidating:1;
    unsigned                    background:1;
} ngx_pt_req_t;


/* an error of a /v2/ path */
typedef struct {
    ngx_uint_t                  status;
    const char                 *code;
    const char                 *message;
} ngx_pt_route_error_t;


/* the path's parser */
ngx_int_t ngx_pt_registry_parse(ngx_str_t *uri, ngx_pt_req_t *ctx,
    ngx_pt_route_error_t *e);

/* the manifest side */
ngx_int_t ngx_pt_manifest_request(ngx_http_request_t *r, ngx_pt_req_t *ctx);
ngx_int_t ngx_pt_referrers_request(ngx_http_request_t *r, ngx_pt_req_t *ctx);
ngx_int_t ngx_pt_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_msec_t ngx_pt_manifest_ttl(ngx_http_request_t *r, ngx_pt_req_t *ctx);
ngx_int_t ngx_pt_manifest_key(ngx_pool_t *pool, ngx_str_t *repo,
    ngx_str_t *ref, ngx_str_t *key);

/* the children of an index pulled by tag (ngx_pt_index.c) */
ngx_int_t ngx_pt_index_prepare(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_manifest_info_t *mi);
ngx_int_t ngx_pt_index_start(ngx_pt_index_t *ix);

/* answers and exchanges, shared by both sides */
void ngx_pt_registry_finalize(ngx_http_request_t *r, ngx_int_t rc);
ngx_pt_settings_t *ngx_pt_registry_settings(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
ngx_int_t ngx_pt_registry_fetch(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_settings_t *s, const char *what, ngx_str_t *ref, ngx_uint_t head,
    size_t body, void (*next)(ngx_http_request_t *r));
ngx_int_t ngx_pt_registry_upstream_url(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, const char *what, ngx_str_t *ref, ngx_str_t *url);
ngx_int_t ngx_pt_registry_upstream_error(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f, const char *unknown);
ngx_int_t ngx_pt_registry_status_error(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_uint_t status, const char *unknown);
ngx_int_t ngx_pt_registry_send_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_str_t *type, ngx_str_t *digest, off_t size);
ngx_int_t ngx_pt_registry_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);
ngx_int_t ngx_pt_registry_set_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value);
ngx_int_t ngx_pt_registry_etag(ngx_http_request_t *r, ngx_str_t *digest);


#endif /* _NGX_PT_REGISTRY_INT_H_INCLUDED_ */
