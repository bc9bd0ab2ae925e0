
/*
 * ngx_pullthrough: counters for Prometheus and their page
 * (ngx_pt_metrics.c).
 */


#ifndef _NGX_PT_METRICS_H_INCLUDED_
#define _NGX_PT_METRICS_H_INCLUDED_


#include <ngx_pt.h>


#define NGX_PT_CACHE_STATUSES      9         /* "-" and the eight others */
#define NGX_PT_METRICS_BYTES_ONLY  ((ngx_uint_t) -1)
#define NGX_PT_METRICS_LINE        (2 * NGX_PT_NAME_MAX + 512)


typedef struct {
    ngx_pool_t                 *pool;
    ngx_chain_t                *first;
    ngx_chain_t                *last;
    size_t                      len;
    ngx_uint_t                  failed;
} ngx_pt_metrics_out_t;


ngx_str_t *ngx_pt_cache_status_name(ngx_uint_t status);
void ngx_pt_metrics_request(ngx_str_t *dist, ngx_uint_t status,
    off_t bytes);
void ngx_pt_metrics_upstream(ngx_str_t *remote, ngx_uint_t status,
    off_t fetched);
ngx_int_t ngx_pt_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_PT_METRICS_H_INCLUDED_ */
