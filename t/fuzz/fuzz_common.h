
/*
 * ngx_pullthrough fuzzing: what every target shares. nginx's core is
 * linked in (built from the same release's sources by t/fuzz/build), so a
 * target gets real pools and strings; logs go nowhere.
 */

#ifndef _NGX_PT_FUZZ_COMMON_H_INCLUDED_
#define _NGX_PT_FUZZ_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


static ngx_log_t   ngx_pt_fuzz_log;
static ngx_open_file_t  ngx_pt_fuzz_file;


static ngx_log_t *
ngx_pt_fuzz_init(void)
{
    if (ngx_pagesize == 0) {
        ngx_pagesize = getpagesize();
        for (ngx_pagesize_shift = 0;
             (1U << ngx_pagesize_shift) < ngx_pagesize;
             ngx_pagesize_shift++)
        {
            /* void */
        }

        ngx_pt_fuzz_file.fd = -1;
        ngx_pt_fuzz_log.file = &ngx_pt_fuzz_file;
        ngx_pt_fuzz_log.log_level = NGX_LOG_EMERG;

        ngx_time_init();
    }

    return &ngx_pt_fuzz_log;
}


#endif /* _NGX_PT_FUZZ_COMMON_H_INCLUDED_ */
