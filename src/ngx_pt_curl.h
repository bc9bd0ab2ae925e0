
/*
 * ngx_pullthrough: the libcurl transport and libcurl's view of a remote's
 * link (ngx_pt_curl.c).
 */


#ifndef _NGX_PT_CURL_H_INCLUDED_
#define _NGX_PT_CURL_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>


extern const ngx_pt_transport_t  ngx_pt_curl_transport;

ngx_int_t ngx_pt_curl_init_process(ngx_cycle_t *cycle);
void ngx_pt_curl_exit_process(ngx_cycle_t *cycle);
void ngx_pt_link_apply(void *easy, ngx_pt_link_t *link);


#endif /* _NGX_PT_CURL_H_INCLUDED_ */
