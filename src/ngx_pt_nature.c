
/*
 * ngx_pullthrough: what an image is, as Pulp's manifests tell it: its type
 * (image, index, bootable, flatpak, helm, artifact, cosign_...), the sum
 * of its compressed layers, its annotations, and from its config blob its
 * architecture, os and labels.
 *
 * A manifest's own facts are read from its JSON when it is recorded (on
 * the event loop, where the manifest is parsed anyway). Its config is
 * another blob, which clients fetch after the manifest, or never: the
 * fill that stores a blob reads it in its commit thread, right after the
 * verdict, when it is small JSON (at most NGX_PT_CONFIG_MAX_SIZE), and
 * what an image config says is recorded by digest (configs) in the
 * transaction that records the blob. The admin API joins the two by the
 * manifest's config digest, and never reads a file.
 */


#include <ngx_pt.h>
#include <ngx_pt_content.h>


/* Pulp's known media types: an OCI manifest's config of another type
 * makes it an artifact */
static const char  *ngx_pt_known_types[] = {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.cncf.helm.config.v1+json",
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    NULL
};


/* a layer of these types makes a cosign manifest: type => Pulp's type */
static ngx_str_t  ngx_pt_cosign_types[] = {
    ngx_string("application/vnd.dev.cosign.simplesigning.v1+json"),
    ngx_string("cosign_signature"),
    ngx_string("application/vnd.dsse.envelope.v1+json"),
    ngx_string("cosign_attestation"),
    ngx_string("application/vnd.dev.sigstore.bundle.v0.3+json"),
    ngx_string("cosign_attestation_bundle"),
    ngx_string("application/vnd.cyclonedx"),
    ngx_string("cosign_sbom"),
    ngx_string("application/vnd.cyclonedx+xml"),
    ngx_string("cosign_sbom"),
    ngx_string("application/vnd.cyclonedx+json"),
    ngx_string("cosign_sbom"),
    ngx_string("text/spdx"),
    ngx_string("cosign_sbom"),
    ngx_string("text/spdx+xml"),
    ngx_string("cosign_sbom"),
    ngx_string("text/spdx+json"),
    ngx_string("cosign_sbom"),
    ngx_string("application/vnd.syft+json"),
    ngx_string("cosign_sbom"),
    ngx_null_string
};


static void ngx_pt_nature_layers(ngx_pt_manifest_info_t *mi, yajl_val doc);
static void ngx_pt_nature_string(yajl_val v, ngx_str_t *s);
static ngx_uint_t ngx_pt_nature_is(ngx_str_t *s, const char *text);
static ngx_uint_t ngx_pt_nature_known(ngx_str_t *type);
static ngx_uint_t ngx_pt_nature_oci(ngx_str_t *media_type);


/* the facts of a manifest's JSON, when it is parsed to be recorded */

void
ngx_pt_manifest_read_nature(ngx_pt_manifest_info_t *mi, yajl_val doc)
{
    yajl_val  v;

    ngx_pt_nature_string(ngx_pt_json_get(ngx_pt_json_get(doc, "config"),
                                         "mediaType"),
                         &mi->config_type);

    v = ngx_pt_json_get(doc, "artifactType");
    mi->artifact = (v && YAJL_IS_STRING(v) && v->u.string[0] != '\0');

    v = ngx_pt_json_get(doc, "annotations");
    if (v && YAJL_IS_OBJECT(v)) {
        mi->rec.annotations = v;

        v = ngx_pt_json_get(v, "containers.bootc");
        mi->bootc = (v && YAJL_IS_STRING(v) && ngx_strcmp(v->u.string, "1")
                                                == 0);
    }

    /* Docker schema 1 names the platform in the manifest itself */

    ngx_pt_nature_string(ngx_pt_json_get(doc, "architecture"),
                         &mi->rec.architecture);
    ngx_pt_nature_string(ngx_pt_json_get(doc, "os"), &mi->rec.os);

    ngx_pt_nature_layers(mi, doc);
}


/* the sum of the layers' sizes (schema 1: 0, as Pulp has it), and a
 * cosign layer's type */

static void
ngx_pt_nature_layers(ngx_pt_manifest_info_t *mi, yajl_val doc)
{
    size_t     i, j;
    yajl_val   layers, size;
    ngx_str_t  type;

    mi->rec.layers_size = NGX_PT_NULL_INT;

    if (ngx_pt_json_get(doc, "fsLayers")) {
        mi->rec.layers_size = 0;
        return;
    }

    layers = ngx_pt_json_get(doc, "layers");
    if (layers == NULL || !YAJL_IS_ARRAY(layers)) {
        return;
    }

    mi->rec.layers_size = 0;

    for (i = 0; i < layers->u.array.len; i++) {
        size = ngx_pt_json_get(layers->u.array.values[i], "size");

        if (size && YAJL_IS_INTEGER(size) && YAJL_GET_INTEGER(size) > 0
            && YAJL_GET_INTEGER(size) < NGX_MAX_OFF_T_VALUE
                                        - mi->rec.layers_size)
        {
            mi->rec.layers_size += YAJL_GET_INTEGER(size);
        }

        if (mi->cosign_type.len) {
            continue;
        }

        ngx_pt_nature_string(ngx_pt_json_get(layers->u.array.values[i],
                                             "mediaType"),
                             &type);

        for (j = 0; type.len && ngx_pt_cosign_types[j].len; j += 2) {
            if (type.len == ngx_pt_cosign_types[j].len
                && ngx_strncmp(type.data, ngx_pt_cosign_types[j].data,
                               type.len) == 0)
            {
                mi->cosign_type = ngx_pt_cosign_types[j + 1];
                break;
            }
        }
    }
}


/*
 * Pulp's type of a manifest, from its facts and its final media type:
 * index; else bootable, helm, cosign_..., artifact, image in that order
 * (flatpak and a bootable label are its config's, joined when it is
 * shown); null for a media type Pulp does not know. Annotations are
 * OCI's only.
 */

void
ngx_pt_manifest_nature(ngx_pt_manifest_info_t *mi)
{
    ngx_str_t   *mt;
    ngx_uint_t   oci;

    mt = &mi->rec.media_type;
    oci = ngx_pt_nature_oci(mt);

    if (!oci) {
        mi->rec.annotations = NULL;
    }

    if (ngx_pt_manifest_is_index(mt)) {
        ngx_str_set(&mi->rec.type, "index");
        mi->rec.layers_size = NGX_PT_NULL_INT;

    } else if (oci && mi->bootc) {
        ngx_str_set(&mi->rec.type, "bootable");

    } else if (ngx_pt_nature_is(&mi->config_type,
                                "application/vnd.cncf.helm.config.v1+json"))
    {
        ngx_str_set(&mi->rec.type, "helm");

    } else if (mi->cosign_type.len) {
        mi->rec.type = mi->cosign_type;

    } else if (ngx_pt_nature_is(mt,
                                "application/vnd.oci.image.manifest.v1+json")
               && (mi->artifact
                   || ngx_pt_nature_is(&mi->config_type,
                                       "application/vnd.oci.empty.v1+json")
                   || !ngx_pt_nature_known(&mi->config_type)))
    {
        ngx_str_set(&mi->rec.type, "artifact");

    } else if (oci
               || ngx_pt_nature_is(mt,
                      "application/vnd.docker.distribution.manifest.v2+json")
               || ngx_pt_nature_is(mt,
                      "application/vnd.docker.distribution.manifest.v1+json")
               || ngx_pt_nature_is(mt,
                   "application/vnd.docker.distribution.manifest.v1+prettyjws"))
    {
        ngx_str_set(&mi->rec.type, "image");
    }
}


ngx_uint_t
ngx_pt_manifest_is_index(ngx_str_t *media_type)
{
    return ngx_pt_nature_is(media_type,
                            "application/vnd.oci.image.index.v1+json")
           || ngx_pt_nature_is(media_type,
                  "application/vnd.docker.distribution.manifest.list.v2+json");
}


/*
 * In a fill's commit thread: what a stored blob says if it is an image
 * config (a JSON object with an architecture, an os or a config), as the
 * value of its configs record, from pool only. NGX_DECLINED: a layer, an
 * artifact, anything larger than NGX_PT_CONFIG_MAX_SIZE or malformed.
 */

ngx_int_t
ngx_pt_config_read(ngx_pool_t *pool, ngx_log_t *log, ngx_fd_t fd, off_t size,
    ngx_str_t *value)
{
    u_char           *p, *last;
    ssize_t           n;
    yajl_val          doc, config, v;
    ngx_str_t         in, err;
    ngx_pt_config_t   c;

    if (size <= 1 || size > NGX_PT_CONFIG_MAX_SIZE) {
        return NGX_DECLINED;
    }

    in.data = ngx_pnalloc(pool, (size_t) size);
    if (in.data == NULL) {
        return NGX_ERROR;
    }

    n = pread(fd, in.data, (size_t) size, 0);

    if (n != (ssize_t) size) {
        ngx_log_error(NGX_LOG_WARN, log, n == -1 ? ngx_errno : 0,
                      "pullthrough: a stored blob of %O bytes could not be "
                      "read back (%z)", size, n);
        return NGX_DECLINED;
    }

    in.len = n;
    last = in.data + in.len;

    /* JSON begins with an object; a layer (tar, gzip, zstd) does not */

    for (p = in.data; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                                   || *p == '\n');
         p++)
    {
        /* void */
    }

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

    doc = ngx_pt_json_parse(pool, &in, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_DECLINED;
    }

    ngx_memzero(&c, sizeof(ngx_pt_config_t));

    ngx_pt_nature_string(ngx_pt_json_get(doc, "architecture"),
                         &c.architecture);
    ngx_pt_nature_string(ngx_pt_json_get(doc, "os"), &c.os);

    config = ngx_pt_json_get(doc, "config");

    if (c.architecture.data == NULL && c.os.data == NULL
        && (config == NULL || !YAJL_IS_OBJECT(config)))
    {
        return NGX_DECLINED;
    }

    v = ngx_pt_json_get(config, "Labels");
    c.labels = (v && YAJL_IS_OBJECT(v)) ? v : NULL;

    v = ngx_pt_json_get(c.labels, "containers.bootc");
    c.bootable = (v && YAJL_IS_STRING(v) && ngx_strcmp(v->u.string, "1") == 0);

    v = ngx_pt_json_get(c.labels, "org.flatpak.ref");
    c.flatpak = (v && YAJL_IS_STRING(v) && v->u.string[0] != '\0');

    return ngx_pt_config_encode(pool, &c, value);
}


/* a JSON string of at most NGX_PT_NAME_MAX bytes, else none */

static void
ngx_pt_nature_string(yajl_val v, ngx_str_t *s)
{
    ngx_str_null(s);

    if (v && YAJL_IS_STRING(v) && ngx_strlen(v->u.string) <= NGX_PT_NAME_MAX)
    {
        s->data = (u_char *) v->u.string;
        s->len = ngx_strlen(v->u.string);
    }
}


static ngx_uint_t
ngx_pt_nature_is(ngx_str_t *s, const char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    return s->len == len && ngx_strncmp(s->data, text, len) == 0;
}


static ngx_uint_t
ngx_pt_nature_known(ngx_str_t *type)
{
    ngx_uint_t  i;

    for (i = 0; ngx_pt_known_types[i]; i++) {
        if (ngx_pt_nature_is(type, ngx_pt_known_types[i])) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_pt_nature_oci(ngx_str_t *media_type)
{
    return ngx_pt_nature_is(media_type,
                            "application/vnd.oci.image.manifest.v1+json")
           || ngx_pt_nature_is(media_type,
                               "application/vnd.oci.image.index.v1+json");
}
