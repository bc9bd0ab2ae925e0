
/*
 * ngx_pullthrough: JSON through yajl, bound to nginx pools (ngx_pt_json.c).
 */


#ifndef _NGX_PT_JSON_H_INCLUDED_
#define _NGX_PT_JSON_H_INCLUDED_


#include <ngx_pt.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>


yajl_gen ngx_pt_json_gen(ngx_pool_t *pool);
ngx_int_t ngx_pt_json_result(yajl_gen g, ngx_pool_t *pool, ngx_str_t *out);
yajl_val ngx_pt_json_parse(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *err);
yajl_val ngx_pt_json_parse_input(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *err);
yajl_val ngx_pt_json_get(yajl_val obj, const char *key);
ngx_int_t ngx_pt_json_has_nul(const char *s);
ngx_int_t ngx_pt_json_depth(u_char *p, u_char *last);

void ngx_pt_json_key(yajl_gen g, const char *key);
void ngx_pt_json_cstr(yajl_gen g, const char *s);
void ngx_pt_json_str(yajl_gen g, ngx_str_t *s);  /* NULL data: null */
void ngx_pt_json_int(yajl_gen g, int64_t n);      /* NGX_PT_NULL_INT: null */
void ngx_pt_json_num(yajl_gen g, double n);       /* NaN: null */
void ngx_pt_json_bool(yajl_gen g, ngx_uint_t b);
void ngx_pt_json_null(yajl_gen g);
void ngx_pt_json_value(yajl_gen g, yajl_val v);
void ngx_pt_json_map_open(yajl_gen g);
void ngx_pt_json_map_close(yajl_gen g);
void ngx_pt_json_array_open(yajl_gen g);
void ngx_pt_json_array_close(yajl_gen g);


#endif /* _NGX_PT_JSON_H_INCLUDED_ */
