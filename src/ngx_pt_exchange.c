
/*
 * ngx_pullthrough: the answer of an upstream exchange as its transports
 * record it. Both transports see the same header lines (the proxy module's
 * parsed headers, libcurl's raw ones) and keep the same few of them, in
 * the exchange's own pool: the subrequest or transfer they came from ends
 * before the exchange does. What a kept header says about retrying (the
 * Proxy-Status of an upstream cache) is read here too.
 */


#include <ngx_pt.h>
#include <ngx_pt_exchange.h>


/* before each try: nothing is known of its answer */

void
ngx_pt_exchange_reset(ngx_pt_fetch_t *f)
{
    f->status = 0;
    f->length = -1;
    f->header = 0;
    f->too_big = 0;
    f->stopped = 0;
    f->in_post = 0;
    f->reused = 0;
    f->http2 = 0;
    f->try_start = ngx_current_msec;
    f->try_bytes = 0;

    ngx_str_null(&f->content_type);
    ngx_str_null(&f->digest);
    ngx_str_null(&f->location);
    ngx_str_null(&f->retry_after);
    ngx_str_null(&f->www_authenticate);
    ngx_str_null(&f->proxy_status);

    if (f->body) {
        f->body->pos = f->body->start;
        f->body->last = f->body->start;
    }
}


/* one header line of the answer: kept when the exchange needs it */

ngx_int_t
ngx_pt_exchange_header(ngx_pt_fetch_t *f, ngx_str_t *name, ngx_str_t *value)
{
    ngx_str_t   *dst;
    ngx_uint_t   i;

    static const struct {
        ngx_str_t    name;
        size_t       offset;
    } kept[] = {
        { ngx_string("Content-Type"),
          offsetof(ngx_pt_fetch_t, content_type) },
        { ngx_string("Location"), offsetof(ngx_pt_fetch_t, location) },
        { ngx_string("Docker-Content-Digest"),
          offsetof(ngx_pt_fetch_t, digest) },
        { ngx_string("Retry-After"), offsetof(ngx_pt_fetch_t, retry_after) },
        { ngx_string("WWW-Authenticate"),
          offsetof(ngx_pt_fetch_t, www_authenticate) },
        { ngx_string("Proxy-Status"),
          offsetof(ngx_pt_fetch_t, proxy_status) }
    };

    if (name->len == sizeof("Content-Length") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Length",
                           name->len) == 0)
    {
        f->length = ngx_atoof(value->data, value->len);
        return NGX_OK;
    }

    for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        if (name->len != kept[i].name.len
            || ngx_strncasecmp(name->data, kept[i].name.data, name->len) != 0)
        {
            continue;
        }

        dst = (ngx_str_t *) ((u_char *) f + kept[i].offset);

        if (dst->data) {
            /* the first one counts */
            return NGX_OK;
        }

        dst->data = ngx_pnalloc(f->pool, value->len);
        if (dst->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(dst->data, value->data, value->len);
        dst->len = value->len;

        return NGX_OK;
    }

    return NGX_OK;
}


/*
 * Whether the answer is the gateway error of an upstream that is a cache
 * like this one, made after its own tries: its Proxy-Status (RFC 9209)
 * has a member of ours. Asking it again would only repeat those tries.
 */

ngx_uint_t
ngx_pt_exchange_gave_up(ngx_pt_fetch_t *f)
{
    u_char  *p, *last;

    if (!f->header || f->status < 500 || f->status > 599) {
        return 0;
    }

    p = f->proxy_status.data;
    last = p + f->proxy_status.len;

    while (p < last) {

        /* a member begins after the start or a comma, and spaces */

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if ((size_t) (last - p) >= sizeof(NGX_PT_PROXY_NAME) - 1
            && ngx_strncmp(p, NGX_PT_PROXY_NAME,
                           sizeof(NGX_PT_PROXY_NAME) - 1) == 0
            && (last - p == sizeof(NGX_PT_PROXY_NAME) - 1
                || p[sizeof(NGX_PT_PROXY_NAME) - 1] == ';'))
        {
            return 1;
        }

        while (p < last && *p != ',') {
            p++;
        }

        p++;
    }

    return 0;
}
