
/*
 * ngx_pullthrough: upstream exchanges (ngx_pt_fetch.c).
 */


#ifndef _NGX_PT_FETCH_H_INCLUDED_
#define _NGX_PT_FETCH_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>


ngx_int_t ngx_pt_fetch_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_pt_fetch_init(ngx_pt_fetch_t *f, ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_pt_settings_t *s, ngx_str_t *url);
ngx_int_t ngx_pt_fetch_start(ngx_pt_fetch_t *f);
void ngx_pt_fetch_detach(ngx_pt_fetch_t *f);
void ngx_pt_fetch_abort(ngx_pt_fetch_t *f);
void ngx_pt_fetch_resume(ngx_pt_fetch_t *f);
ngx_uint_t ngx_pt_fetch_running(ngx_pt_fetch_t *f);


#endif /* _NGX_PT_FETCH_H_INCLUDED_ */
