
/*
 * ngx_pullthrough: the upstream connections of the proxy-module transport
 * (ngx_pt_peer.c): the module's own upstream, kept connections and TLS
 * sessions per target.
 */


#ifndef _NGX_PT_PEER_H_INCLUDED_
#define _NGX_PT_PEER_H_INCLUDED_


#include <ngx_pt.h>


/* the upstream the transport's internal location proxies to */
#define NGX_PT_PEER_NAME  "pullthrough_peers"


/*
 * Where a subrequest's upstream connects: the module's context of the
 * subrequest begins with it. key: what a kept connection or a TLS session
 * may be reused for (scheme, host, port, whether certificates are checked).
 */
typedef struct {
    ngx_addr_t                 *addrs;
    ngx_uint_t                  naddrs;
    ngx_str_t                   key;
    ngx_str_t                   name;        /* host:port, for the logs */
} ngx_pt_peer_target_t;


ngx_int_t ngx_pt_peer_add_upstream(ngx_conf_t *cf);


#endif /* _NGX_PT_PEER_H_INCLUDED_ */
