
/*
 * ngx_pullthrough: small helpers shared by the other parts.
 */


#include <ngx_pt.h>

#include <openssl/rand.h>
#include <sys/time.h>


/* a random (version 4) UUID in its canonical lowercase form */

ngx_int_t
ngx_pt_uuid(ngx_pool_t *pool, ngx_str_t *out)
{
    u_char  b[16], *p;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return NGX_ERROR;
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    p = ngx_pnalloc(pool, NGX_PT_UUID_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = ngx_pt_uuid_format(p, b) - p;

    return NGX_OK;
}


/* current time as Pulp writes it: 2026-11-27T08:00:00.123456Z */

ngx_int_t
ngx_pt_now(ngx_pool_t *pool, ngx_str_t *out)
{
    u_char          *p;
    ngx_tm_t         tm;
    struct timeval   tv;

    ngx_gettimeofday(&tv);
    ngx_gmtime(tv.tv_sec, &tm);

    p = ngx_pnalloc(pool, NGX_PT_TIME_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                           (int) tv.tv_usec)
               - p;

    return NGX_OK;
}


/*
 * Whether prefix is path itself or a leading run of its '/'-separated
 * components: "dock" is a prefix of "dock/x" but not of "dockerfoo/x".
 */

ngx_int_t
ngx_pt_path_prefix(ngx_str_t *prefix, ngx_str_t *path)
{
    if (prefix->len > path->len
        || ngx_strncmp(prefix->data, path->data, prefix->len) != 0)
    {
        return 0;
    }

    return prefix->len == path->len || path->data[prefix->len] == '/';
}


/*
 * One component of an OCI repository name:
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
 */

ngx_int_t
ngx_pt_oci_component_valid(u_char *p, size_t len)
{
    u_char  *last;

    last = p + len;

    for ( ;; ) {

        /* an alphanumeric run */

        if (p == last
            || !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
        {
            return 0;
        }

        while (p < last
               && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
        {
            p++;
        }

        if (p == last) {
            return 1;
        }

        /* a separator */

        if (*p == '.') {
            p++;

        } else if (*p == '_') {
            p++;
            if (p < last && *p == '_') {
                p++;
            }

        } else if (*p == '-') {
            while (p < last && *p == '-') {
                p++;
            }

        } else {
            return 0;
        }
    }
}


/* search of s2 (n bytes) in [s1, last), optionally ignoring case */

u_char *
ngx_pt_strfind(u_char *s1, u_char *last, u_char *s2, size_t n,
    ngx_uint_t caseless)
{
    if (n == 0) {
        return s1;
    }

    for ( /* void */ ; s1 + n <= last; s1++) {
        if ((caseless ? ngx_strncasecmp(s1, s2, n)
                      : ngx_strncmp(s1, s2, n)) == 0)
        {
            return s1;
        }
    }

    return NULL;
}


/* a complete response from a buffer in memory: the admin API, the registry */

ngx_int_t
ngx_pt_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    ngx_str_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || body->len == 0) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* 16 bytes in the canonical UUID form, 36 characters at dst */

u_char *
ngx_pt_uuid_format(u_char *dst, u_char *b)
{
    dst = ngx_hex_dump(dst, b, 4);
    *dst++ = '-';
    dst = ngx_hex_dump(dst, b + 4, 2);
    *dst++ = '-';
    dst = ngx_hex_dump(dst, b + 6, 2);
    *dst++ = '-';
    dst = ngx_hex_dump(dst, b + 8, 2);
    *dst++ = '-';

    return ngx_hex_dump(dst, b + 10, 6);
}


/*
 * The wait before another try after `tries` failed ones: 250 ms, doubled
 * each time up to 4 s, or the upstream's Retry-After (seconds) when it is
 * 10 s at most. 0: no retry (a longer Retry-After, or one that does not
 * parse: the client decides).
 */

ngx_msec_t
ngx_pt_backoff(ngx_uint_t tries, ngx_int_t retry_after)
{
    ngx_msec_t  wait;

    if (retry_after != NGX_PT_NO_RETRY_AFTER) {
        return (retry_after >= 0 && retry_after <= NGX_PT_RETRY_AFTER_MAX)
               ? (ngx_msec_t) (retry_after ? retry_after * 1000 : 1) : 0;
    }

    wait = (tries < 8) ? (ngx_msec_t) NGX_PT_BACKOFF_FIRST << tries
                       : NGX_PT_BACKOFF_MAX;

    return ngx_min(wait, NGX_PT_BACKOFF_MAX);
}


/* a part's variables, from its table ending with ngx_http_null_variable */

ngx_int_t
ngx_pt_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* a C string (yajl's) copied into the pool, NUL-terminated */

ngx_int_t
ngx_pt_strdup(ngx_pool_t *pool, const char *s, ngx_str_t *out)
{
    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len + 1);

    return NGX_OK;
}


/*
 * Whether rc is an error status that a handler answers in its API's own
 * format (JSON, OCI error JSON) rather than with nginx's HTML page: not
 * one that closes the connection, and not once the header has gone.
 */

ngx_uint_t
ngx_pt_error_status(ngx_http_request_t *r, ngx_int_t rc)
{
    return rc >= NGX_HTTP_BAD_REQUEST
           && rc != NGX_HTTP_CLOSE
           && rc != NGX_HTTP_REQUEST_TIME_OUT
           && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST
           && !r->header_sent;
}


/* the wall clock in ms: workers compare times in the zone and the store */

uint64_t
ngx_pt_clock(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
