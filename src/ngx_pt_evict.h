
/*
 * ngx_pullthrough: the store's lifecycle in nginx's cache manager process
 * (ngx_pt_evict.c): accesses moved into the store, eviction under
 * max_size, min_free and inactive, garbage collection of what no
 * repository has.
 */


#ifndef _NGX_PT_EVICT_H_INCLUDED_
#define _NGX_PT_EVICT_H_INCLUDED_


#include <ngx_pt.h>


ngx_int_t ngx_pt_evict_add_path(ngx_conf_t *cf,
    ngx_http_pullthrough_main_conf_t *pmcf);
ngx_int_t ngx_pt_evict_param(ngx_conf_t *cf,
    ngx_http_pullthrough_main_conf_t *pmcf, ngx_str_t *param);
void ngx_pt_evict_init_conf(ngx_http_pullthrough_main_conf_t *pmcf);


#endif /* _NGX_PT_EVICT_H_INCLUDED_ */
