
/*
 * Fuzz target: an upstream's WWW-Authenticate header as the cache reads a
 * Bearer challenge (realm, service, scope; a realm must be an http(s) URL
 * without user information). The file is included for its static parser.
 */

#include "fuzz_common.h"
#include "../../src/ngx_pt_auth.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t            h;
    ngx_log_t           *log;
    ngx_pool_t          *pool;
    ngx_pt_settings_t    s;
    ngx_pt_challenge_t   ch;
    ngx_pt_token_ask_t   ask;

    log = ngx_pt_fuzz_init();

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return 0;
    }

    h.data = ngx_pnalloc(pool, size + 1);
    if (h.data == NULL) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memcpy(h.data, data, size);
    h.data[size] = '\0';
    h.len = size;

    ngx_memzero(&s, sizeof(ngx_pt_settings_t));
    ngx_str_set(&s.name, "library/fuzz");

    ngx_memzero(&ask, sizeof(ngx_pt_token_ask_t));
    ask.challenge = &h;
    ask.settings = &s;
    ask.pool = pool;
    ask.log = log;

    ngx_memzero(&ch, sizeof(ngx_pt_challenge_t));

    (void) ngx_pt_auth_challenge(&ask, &ch);

    ngx_destroy_pool(pool);

    return 0;
}
