
/*
 * Fuzz target: an upstream's manifest as the cache parses it
 * (ngx_pt_content_parse_manifest(): the config, layers, schema 1
 * fsLayers, the manifests of an index, the media type), the type it
 * would be stored with (ngx_pt_content_media_type()) and Pulp's type of
 * it (ngx_pt_manifest_nature()).
 */

#include "fuzz_common.h"
#include <ngx_pt.h>
#include <ngx_pt_content.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t                ct;
    ngx_log_t               *log;
    ngx_pool_t              *pool;
    ngx_pt_manifest_info_t   mi;

    log = ngx_pt_fuzz_init();

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return 0;
    }

    ngx_memzero(&mi, sizeof(ngx_pt_manifest_info_t));

    if (ngx_pt_content_parse_manifest(pool, &mi, (u_char *) data, size)
        == NGX_OK)
    {
        /* the first line of the input doubles as an upstream type */
        ct.data = (u_char *) data;
        ct.len = ngx_strlchr(ct.data, ct.data + size, '\n')
                 ? (size_t) (ngx_strlchr(ct.data, ct.data + size, '\n')
                             - ct.data)
                 : size;
        ngx_pt_content_media_type(&mi, &ct);
        (void) ngx_pt_content_type_safe(&mi.rec.media_type);
        ngx_pt_manifest_nature(&mi);
    }

    ngx_destroy_pool(pool);

    return 0;
}
