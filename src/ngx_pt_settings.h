
/*
 * ngx_pullthrough: the settings of an exchange, from a remote's record
 * (ngx_pt_settings.c).
 */


#ifndef _NGX_PT_SETTINGS_H_INCLUDED_
#define _NGX_PT_SETTINGS_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>
#include <ngx_pt_record.h>


ngx_pt_settings_t *ngx_pt_settings_create(ngx_http_request_t *r,
    ngx_pt_remote_t *remote, ngx_str_t *name);
ngx_pt_settings_t *ngx_pt_settings_copy(ngx_pool_t *pool,
    ngx_pt_settings_t *s);
ngx_uint_t ngx_pt_settings_docker_hub(ngx_pt_remote_t *remote);
void ngx_pt_settings_prefix(ngx_pt_remote_t *remote, ngx_str_t *prefix);
ngx_uint_t ngx_pt_settings_serves(ngx_pt_remote_t *remote,
    ngx_str_t *registry);


#endif /* _NGX_PT_SETTINGS_H_INCLUDED_ */
