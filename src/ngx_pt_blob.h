
/*
 * ngx_pullthrough: the content-addressed files of the store
 * (ngx_pt_blob.c).
 */


#ifndef _NGX_PT_BLOB_H_INCLUDED_
#define _NGX_PT_BLOB_H_INCLUDED_


#include <ngx_pt.h>

#include <openssl/evp.h>


#define NGX_PT_DIGEST_MAX      (sizeof("sha512:") - 1 + 128)


typedef struct {
    ngx_str_t                   full;        /* sha256:<hex> */
    ngx_str_t                   alg;         /* sha256 */
    ngx_str_t                   hex;
    const EVP_MD               *md;
} ngx_pt_digest_t;


void ngx_pt_blob_init(ngx_cycle_t *cycle, ngx_str_t *root);
void ngx_pt_blob_set_root(ngx_str_t *root);
void ngx_pt_blob_clean_temp(ngx_cycle_t *cycle, ngx_str_t *root);
ngx_int_t ngx_pt_digest_parse(ngx_str_t *s, ngx_pt_digest_t *d);
ngx_int_t ngx_pt_digest_compute(ngx_pool_t *pool, const EVP_MD *md,
    u_char *data, size_t len, ngx_str_t *out);
ngx_int_t ngx_pt_blob_path(ngx_pool_t *pool, ngx_pt_digest_t *d,
    ngx_str_t *path);
ngx_int_t ngx_pt_blob_temp(ngx_pool_t *pool, ngx_pid_t pid, ngx_uint_t seq,
    const char *kind, ngx_str_t *path);
ngx_uint_t ngx_pt_blob_seq(void);
void ngx_pt_blob_mkdirs(u_char *path);
ngx_int_t ngx_pt_blob_write_small(ngx_pool_t *pool, ngx_log_t *log,
    ngx_pt_digest_t *d, u_char *data, size_t len);


#endif /* _NGX_PT_BLOB_H_INCLUDED_ */
