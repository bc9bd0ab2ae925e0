
/*
 * ngx_pullthrough: the admin API (ngx_pt_admin.c, ngx_pt_admin_content.c).
 */


#ifndef _NGX_PT_ADMIN_H_INCLUDED_
#define _NGX_PT_ADMIN_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_content.h>
#include <ngx_pt_json.h>


typedef struct {
    ngx_http_request_t         *r;
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_uint_t                  res;
    ngx_pt_type_t              *type;
    ngx_str_t                   id;          /* empty: the collection */
    ngx_uint_t                  versions;    /* .../<id>/versions/ */
    ngx_int_t                   version;     /* -1: all */
    ngx_str_t                   body;
    yajl_gen                    g;
    ngx_uint_t                  status;
} ngx_pt_admin_t;

ngx_int_t ngx_pt_admin_detail(ngx_pt_admin_t *ctx, ngx_uint_t status,
    const char *fmt, ...);
ngx_int_t ngx_pt_admin_store_error(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_page(ngx_pt_admin_t *ctx, ngx_uint_t count,
    ngx_int_t limit, ngx_int_t offset);
ngx_int_t ngx_pt_admin_page_args(ngx_pt_admin_t *ctx, ngx_int_t *limit,
    ngx_int_t *offset);
ngx_int_t ngx_pt_admin_versions(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_content(ngx_pt_admin_t *ctx, ngx_uint_t kind);
void ngx_pt_admin_render_repo(ngx_pt_admin_t *ctx, ngx_pt_repo_t *repo);
void ngx_pt_admin_render_dist(ngx_pt_admin_t *ctx, ngx_pt_dist_t *dist);


/* handlers */

ngx_int_t ngx_http_pullthrough_admin_handler(ngx_http_request_t *r);


#endif /* _NGX_PT_ADMIN_H_INCLUDED_ */
