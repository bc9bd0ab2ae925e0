
/*
 * ngx_pullthrough: upstream authentication (ngx_pt_auth.c).
 */


#ifndef _NGX_PT_AUTH_H_INCLUDED_
#define _NGX_PT_AUTH_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>


/* the token (NULL: none), and whether the realm refused the credentials */
typedef void (*ngx_pt_token_handler_pt)(void *data, ngx_str_t *token,
    ngx_uint_t refused);


typedef struct {
    ngx_str_t                  *challenge;   /* WWW-Authenticate */
    ngx_pt_settings_t          *settings;
    ngx_uint_t                  fresh;       /* not the cached token */
    ngx_pool_t                 *pool;        /* the caller's, for *token */
    ngx_log_t                  *log;
    ngx_pt_token_handler_pt     handler;
    void                       *data;
} ngx_pt_token_ask_t;


ngx_int_t ngx_pt_auth_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_pt_auth_token(ngx_pt_token_ask_t *ask, ngx_str_t *token,
    void **wait);
void ngx_pt_auth_cancel(void *wait);
ngx_int_t ngx_pt_auth_hint(ngx_pt_settings_t *s, ngx_pool_t *pool,
    ngx_str_t *token);
void ngx_pt_auth_basic_seen(ngx_pt_settings_t *s);
ngx_uint_t ngx_pt_auth_basic_wanted(ngx_pt_settings_t *s);
ngx_int_t ngx_pt_auth_bearer_value(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *value);


#endif /* _NGX_PT_AUTH_H_INCLUDED_ */
