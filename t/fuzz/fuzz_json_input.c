
/*
 * Fuzz target: the admin API's JSON input (ngx_pt_json_parse_input():
 * strict UTF-8, nesting bound, the NUL marking), then the NUL check on
 * every string of an object, as the field setters do.
 */

#include "fuzz_common.h"
#include <ngx_pt.h>
#include <ngx_pt_json.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       i;
    yajl_val     v;
    ngx_str_t    in, err;
    ngx_log_t   *log;
    ngx_pool_t  *pool;

    log = ngx_pt_fuzz_init();

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return 0;
    }

    in.data = (u_char *) data;
    in.len = size;

    v = ngx_pt_json_parse_input(pool, &in, &err);

    if (v && YAJL_IS_OBJECT(v)) {
        for (i = 0; i < v->u.object.len; i++) {
            (void) ngx_pt_json_has_nul(v->u.object.keys[i]);

            if (YAJL_IS_STRING(v->u.object.values[i])) {
                (void) ngx_pt_json_has_nul(v->u.object.values[i]->u.string);
            }
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
