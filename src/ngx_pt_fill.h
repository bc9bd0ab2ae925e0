
/*
 * ngx_pullthrough: blob fills and their readers (ngx_pt_fill.c,
 * ngx_pt_fill_share.c, ngx_pt_reader.c).
 */


#ifndef _NGX_PT_FILL_H_INCLUDED_
#define _NGX_PT_FILL_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_blob.h>
#include <ngx_pt_exchange.h>


typedef struct ngx_pt_fill_s    ngx_pt_fill_t;
typedef struct ngx_pt_reader_s  ngx_pt_reader_t;


/* what the registry does for fills, which know nothing of it */
typedef struct {
    /* a reader's response header, and its error before any header */
    ngx_int_t                 (*header)(ngx_http_request_t *r,
                                        ngx_pt_digest_t *d, off_t length);
    ngx_int_t                 (*error)(ngx_http_request_t *r,
                                       ngx_uint_t status, const char *code);
    /*
     * a reader's header for the one range its client asked for: 206 with
     * the bytes [start, end) of length; when start >= length, the whole
     * 416 answer
     */
    ngx_int_t                 (*part)(ngx_http_request_t *r,
                                      ngx_pt_digest_t *d, off_t start,
                                      off_t end, off_t length);
    /*
     * a stored blob, for a repository; kept: what inspect kept of its
     * bytes (NULL for the other repositories the fill served)
     */
    ngx_int_t                 (*record)(ngx_pool_t *pool, ngx_log_t *log,
                                        ngx_str_t *repo, ngx_str_t *digest,
                                        off_t size, ngx_str_t *kept);
    /*
     * in the fill's commit thread, once the blob of size bytes is verified
     * and stored: what its record keeps of its bytes (read from fd), from
     * pool alone; NGX_DECLINED: nothing
     */
    ngx_int_t                 (*inspect)(ngx_pool_t *pool, ngx_log_t *log,
                                         ngx_fd_t fd, off_t size,
                                         ngx_str_t *kept);
} ngx_pt_fill_ops_t;


void ngx_pt_fill_init_process(ngx_pt_fill_ops_t *ops);
ngx_pt_fill_t *ngx_pt_fill_find(ngx_str_t *repo, ngx_pt_digest_t *d);
ngx_pt_fill_t *ngx_pt_fill_create(ngx_http_request_t *r, ngx_str_t *repo,
    ngx_pt_digest_t *d, ngx_pt_settings_t *s, ngx_str_t *url,
    ngx_uint_t *joined);
ngx_uint_t ngx_pt_fill_busy(ngx_str_t *digest);
ngx_int_t ngx_pt_fill_other(ngx_str_t *repo, ngx_pt_digest_t *d,
    ngx_pt_fill_t **out);
ngx_int_t ngx_pt_fill_also(ngx_pt_fill_t *fill, ngx_str_t *repo);

ngx_int_t ngx_pt_fill_attach(ngx_pt_fill_t *fill, ngx_http_request_t *r,
    ngx_pt_reader_t **rdp);
void ngx_pt_reader_write(ngx_pt_reader_t *rd);


#endif /* _NGX_PT_FILL_H_INCLUDED_ */
