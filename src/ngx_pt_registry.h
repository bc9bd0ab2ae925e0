
/*
 * ngx_pullthrough: the registry API on /v2/ (ngx_pt_registry.c).
 */


#ifndef _NGX_PT_REGISTRY_H_INCLUDED_
#define _NGX_PT_REGISTRY_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_fill.h>


extern ngx_pt_fill_ops_t  ngx_pt_registry_fill_ops;

ngx_int_t ngx_pt_registry_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_pullthrough_registry_handler(ngx_http_request_t *r);
ngx_int_t ngx_pt_registry_log_handler(ngx_http_request_t *r);


#endif /* _NGX_PT_REGISTRY_H_INCLUDED_ */
