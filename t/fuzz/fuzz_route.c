
/*
 * Fuzz target: a /v2/ path as the registry reads it
 * (ngx_pt_registry_parse(): the kind of request, the repository name and
 * its components, tags, digests). What it returns must lie within the
 * path.
 */

#include "fuzz_common.h"
#include <ngx_pt.h>
#include <ngx_http.h>
#include <ngx_pt_registry_int.h>


static void
ngx_pt_fuzz_within(ngx_str_t *s, u_char *start, u_char *end)
{
    if (s->len && (s->data < start || s->data + s->len > end)) {
        __builtin_trap();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *buf;
    ngx_str_t              uri;
    ngx_pt_req_t           ctx;
    ngx_pt_route_error_t   e;

    (void) ngx_pt_fuzz_init();

    /* an exact copy: reads past the path are caught */

    buf = malloc(size + 4);
    if (buf == NULL) {
        return 0;
    }

    ngx_memcpy(buf, "/v2/", 4);
    ngx_memcpy(buf + 4, data, size);

    uri.data = buf;
    uri.len = size + 4;

    ngx_memzero(&ctx, sizeof(ngx_pt_req_t));

    if (ngx_pt_registry_parse(&uri, &ctx, &e) == NGX_OK) {
        ngx_pt_fuzz_within(&ctx.repo, buf, buf + uri.len);
        ngx_pt_fuzz_within(&ctx.reference, buf, buf + uri.len);

    } else if (e.status != NGX_HTTP_BAD_REQUEST
               && e.status != NGX_HTTP_NOT_FOUND)
    {
        __builtin_trap();
    }

    free(buf);

    return 0;
}
