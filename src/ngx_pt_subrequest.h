
/*
 * ngx_pullthrough: the transport through nginx's proxy module
 * (ngx_pt_subrequest.c).
 */


#ifndef _NGX_PT_SUBREQUEST_H_INCLUDED_
#define _NGX_PT_SUBREQUEST_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>


extern const ngx_pt_transport_t  ngx_pt_subrequest_transport;

ngx_int_t ngx_pt_subrequest_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_pt_subrequest_init_filters(ngx_conf_t *cf);
char *ngx_pt_subrequest_location(ngx_conf_t *cf, ngx_str_t *parent,
    ngx_str_t *uri, ngx_str_t *insecure_uri);


#endif /* _NGX_PT_SUBREQUEST_H_INCLUDED_ */
