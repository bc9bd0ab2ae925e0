
/*
 * ngx_pullthrough: JSON through yajl, tied to nginx pools so that parse
 * trees and generators are freed with the request.
 */


#include <ngx_pt.h>
#include <ngx_pt_json.h>


#define NGX_PT_JSON_DEPTH_MAX  64       /* arrays and objects in each other */


static void ngx_pt_json_gen_cleanup(void *data);
static void ngx_pt_json_tree_cleanup(void *data);
static ngx_int_t ngx_pt_utf8_valid(u_char *p, u_char *last, size_t *at);


yajl_gen
ngx_pt_json_gen(ngx_pool_t *pool)
{
    yajl_gen             g;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NULL;
    }

    cln->handler = ngx_pt_json_gen_cleanup;
    cln->data = g;

    return g;
}


static void
ngx_pt_json_gen_cleanup(void *data)
{
    yajl_gen_free(data);
}


/* copies the generated document into the pool */

ngx_int_t
ngx_pt_json_result(yajl_gen g, ngx_pool_t *pool, ngx_str_t *out)
{
    size_t                len;
    const unsigned char  *buf;

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, len);
    out->len = len;

    return NGX_OK;
}


/*
 * A client's document (the admin API's bodies): strict UTF-8 (no overlong
 * forms, surrogates or code points past U+10FFFF), then parsed.
 */

yajl_val
ngx_pt_json_parse_input(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *err)
{
    size_t  at;

    if (ngx_pt_utf8_valid(in->data, in->data + in->len, &at) != NGX_OK) {
        err->data = ngx_pnalloc(pool, 64);
        if (err->data == NULL) {
            err->len = 0;
            return NULL;
        }

        err->len = ngx_sprintf(err->data, "invalid UTF-8 at byte %uz", at)
                   - err->data;
        return NULL;
    }

    return ngx_pt_json_parse(pool, in, err);
}


/*
 * Parses a complete document; on failure returns NULL with a one-line
 * message in err (or err->len == 0 on allocation failure).
 */

yajl_val
ngx_pt_json_parse(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *err)
{
    char                 msg[256], *nl;
    u_char              *text, *p;
    yajl_val             v;
    ngx_pool_cleanup_t  *cln;

    err->len = 0;

    /* yajl_tree_parse() wants a C string: an inner NUL would cut it short */

    if (ngx_strlchr(in->data, in->data + in->len, '\0') != NULL) {
        ngx_str_set(err, "the body contains a NUL byte");
        return NULL;
    }

    /* yajl builds and frees trees recursively: a deep one would take the
     * worker's stack */

    if (ngx_pt_json_depth(in->data, in->data + in->len) != NGX_OK) {
        ngx_str_set(err, "nested deeper than 64 levels");
        return NULL;
    }

    text = ngx_pnalloc(pool, in->len + 1);
    if (text == NULL) {
        return NULL;
    }

    ngx_memcpy(text, in->data, in->len);
    text[in->len] = '\0';

    /*
     * Nor can a string carry one as an escape: yajl would cut it there.
     * "\u0000" becomes "\udc00", a lone low surrogate that yajl decodes to
     * the bytes ED B0 80, which valid UTF-8 never holds: the field checks
     * refuse them as a NUL (see ngx_pt_json_has_nul()).
     */

    for (p = text; p < text + in->len; p++) {
        if (*p != '\\') {
            continue;
        }

        /* an escape: "\\u0000" is a NUL, "\\\\u0000" is not */

        if (text + in->len - p >= 6
            && ngx_strncasecmp(p + 1, (u_char *) "u0000", 5) == 0)
        {
            ngx_memcpy(p + 2, "dc00", 4);
        }

        p++;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    msg[0] = '\0';

    v = yajl_tree_parse((const char *) text, msg, sizeof(msg));

    if (v == NULL) {
        if (msg[0] == '\0') {
            ngx_str_set(err, "invalid JSON");
            return NULL;
        }

        /* yajl's message spans lines: keep the first */
        nl = strchr(msg, '\n');
        if (nl) {
            *nl = '\0';
        }

        err->len = ngx_strlen(msg);
        err->data = ngx_pnalloc(pool, err->len);
        if (err->data == NULL) {
            err->len = 0;
            return NULL;
        }

        ngx_memcpy(err->data, msg, err->len);
        return NULL;
    }

    cln->handler = ngx_pt_json_tree_cleanup;
    cln->data = v;

    return v;
}


static void
ngx_pt_json_tree_cleanup(void *data)
{
    yajl_tree_free(data);
}


yajl_val
ngx_pt_json_get(yajl_val obj, const char *key)
{
    size_t  i;

    if (obj == NULL || !YAJL_IS_OBJECT(obj)) {
        return NULL;
    }

    for (i = 0; i < obj->u.object.len; i++) {
        if (ngx_strcmp(obj->u.object.keys[i], key) == 0) {
            return obj->u.object.values[i];
        }
    }

    return NULL;
}


/*
 * Generator shortcuts. Errors are sticky in practice: a failed call leaves
 * the generator in a state where yajl_gen_get_buf() reports it.
 */

void
ngx_pt_json_key(yajl_gen g, const char *key)
{
    yajl_gen_string(g, (const unsigned char *) key, ngx_strlen(key));
}


void
ngx_pt_json_cstr(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *) s, ngx_strlen(s));
}


void
ngx_pt_json_str(yajl_gen g, ngx_str_t *s)
{
    if (s->data == NULL) {
        yajl_gen_null(g);
        return;
    }

    yajl_gen_string(g, s->data, s->len);
}


void
ngx_pt_json_int(yajl_gen g, int64_t n)
{
    if (n == NGX_PT_NULL_INT) {
        yajl_gen_null(g);
        return;
    }

    yajl_gen_integer(g, n);
}


void
ngx_pt_json_num(yajl_gen g, double n)
{
    int   len;
    char  buf[64];

    if (ngx_pt_null_num(n)) {
        yajl_gen_null(g);
        return;
    }

    /* yajl_gen_double() prints 20 digits: 0.1 would read 0.1000...0555 */

    len = snprintf(buf, sizeof(buf) - 2, "%.15g", n);

    if (strpbrk(buf, ".eEn") == NULL) {
        buf[len++] = '.';
        buf[len++] = '0';
    }

    yajl_gen_number(g, buf, len);
}


void
ngx_pt_json_bool(yajl_gen g, ngx_uint_t b)
{
    yajl_gen_bool(g, b ? 1 : 0);
}


void
ngx_pt_json_null(yajl_gen g)
{
    yajl_gen_null(g);
}


/* a parsed value written back as it came (its depth is the parser's,
 * which ngx_pt_json_parse() bounds) */

void
ngx_pt_json_value(yajl_gen g, yajl_val v)
{
    size_t  i;

    if (v == NULL) {
        yajl_gen_null(g);
        return;
    }

    switch (v->type) {

    case yajl_t_string:
        yajl_gen_string(g, (const unsigned char *) v->u.string,
                        ngx_strlen(v->u.string));
        break;

    case yajl_t_number:
        yajl_gen_number(g, v->u.number.r, ngx_strlen(v->u.number.r));
        break;

    case yajl_t_object:
        yajl_gen_map_open(g);

        for (i = 0; i < v->u.object.len; i++) {
            yajl_gen_string(g, (const unsigned char *) v->u.object.keys[i],
                            ngx_strlen(v->u.object.keys[i]));
            ngx_pt_json_value(g, v->u.object.values[i]);
        }

        yajl_gen_map_close(g);
        break;

    case yajl_t_array:
        yajl_gen_array_open(g);

        for (i = 0; i < v->u.array.len; i++) {
            ngx_pt_json_value(g, v->u.array.values[i]);
        }

        yajl_gen_array_close(g);
        break;

    case yajl_t_true:
        yajl_gen_bool(g, 1);
        break;

    case yajl_t_false:
        yajl_gen_bool(g, 0);
        break;

    default:
        yajl_gen_null(g);
    }
}


void
ngx_pt_json_map_open(yajl_gen g)
{
    yajl_gen_map_open(g);
}


void
ngx_pt_json_map_close(yajl_gen g)
{
    yajl_gen_map_close(g);
}


void
ngx_pt_json_array_open(yajl_gen g)
{
    yajl_gen_array_open(g);
}


void
ngx_pt_json_array_close(yajl_gen g)
{
    yajl_gen_array_close(g);
}


/* a NUL the client sent escaped, as ngx_pt_json_parse() marked it (or a
 * lone surrogate it sent, refused the same way) */

ngx_int_t
ngx_pt_json_has_nul(const char *s)
{
    const u_char  *p;

    for (p = (const u_char *) s; *p; p++) {
        /* ED A0..BF: a surrogate, only ever made by a "\u" escape */
        if (p[0] == 0xed && p[1] >= 0xa0 && p[1] <= 0xbf) {
            return 1;
        }
    }

    return 0;
}


/* how deep arrays and objects nest, strings skipped */

ngx_int_t
ngx_pt_json_depth(u_char *p, u_char *last)
{
    ngx_uint_t  depth, in_string;

    depth = 0;
    in_string = 0;

    for ( /* void */ ; p < last; p++) {

        if (in_string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (*p) {

        case '"':
            in_string = 1;
            break;

        case '[':
        case '{':
            if (++depth > NGX_PT_JSON_DEPTH_MAX) {
                return NGX_DECLINED;
            }
            break;

        case ']':
        case '}':
            if (depth) {
                depth--;
            }
            break;
        }
    }

    return NGX_OK;
}


/* RFC 3629 UTF-8: shortest forms, no surrogates, at most U+10FFFF */

static ngx_int_t
ngx_pt_utf8_valid(u_char *p, u_char *last, size_t *at)
{
    u_char      *start;
    uint32_t     c, min;
    ngx_uint_t   n, i;

    start = p;

    while (p < last) {

        if (*p < 0x80) {
            p++;
            continue;
        }

        if ((*p & 0xe0) == 0xc0) {
            n = 1; c = *p & 0x1f; min = 0x80;

        } else if ((*p & 0xf0) == 0xe0) {
            n = 2; c = *p & 0x0f; min = 0x800;

        } else if ((*p & 0xf8) == 0xf0) {
            n = 3; c = *p & 0x07; min = 0x10000;

        } else {
            goto invalid;
        }

        if ((size_t) (last - p) <= n) {
            goto invalid;
        }

        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                goto invalid;
            }

            c = (c << 6) | (p[i] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            goto invalid;
        }

        p += n + 1;
    }

    return NGX_OK;

invalid:

    *at = p - start;

    return NGX_DECLINED;
}
