#!/usr/bin/perl

# A remote's proxy_url: a real forward proxy (Debian's tinyproxy) between
# the cache and Debian's docker-registry carries all of the remote's
# upstream traffic, blobs included: absolute-form requests for an http
# upstream, CONNECT for an https one (with the remote's ca_cert). An
# https:// proxy (tinyproxy behind Debian's stunnel) is checked against
# the remote's ca_cert as its upstream would be. A proxy
# that wants credentials gets proxy_username/proxy_password; without them
# the client gets a 502 in OCI format and the error log says why. Setting
# or clearing proxy_url applies at the next upstream contact; a proxy that
# is down is a 502, and a pull of cached content does not need it.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Certs;
use PT::Tinyproxy;
use PT::Stunnel;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl curl tinyproxy stunnel));

my $dir = tempdir('pt-240-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/$_" for qw(ca other);

my $ca = PT::Certs->new(dir => "$dir/ca");
my $srv = $ca->server(name => 'srv', ip => ['127.0.0.1']);
my $psrv = $ca->server(name => 'proxy', ip => ['127.0.0.1']);
my $other = PT::Certs->new(dir => "$dir/other", cn => 'pt other CA');

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app));
my $hello = $img->{'library/hello:1.0'};
my $hello11 = $img->{'library/hello:1.1'};

my $treg = PT::Registry->new(tls => { cert => $srv->{cert},
                                      key => $srv->{key} })->start;
my $timg = PT::Images::seed($treg, 'hello');
my $thello = $timg->{'library/hello:1.0'};

my $px = PT::Tinyproxy->new->start;
my $apx = PT::Tinyproxy->new(auth => [ 'pt-proxy-user', 'pt-proxy-pass' ])
                       ->start;

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;

my %no_retry = (max_retries => 0);

setup_cache($t, $reg->url, base_path => 'proxied',
            remote => { proxy_url => $px->url, %no_retry });
setup_cache($t, $treg->url, base_path => 'tunnel',
            remote => { proxy_url => $px->url, ca_cert => $ca->ca_text,
                        %no_retry });
setup_cache($t, $reg->url, base_path => 'noauth',
            remote => { proxy_url => $apx->url, %no_retry });
setup_cache($t, $reg->url, base_path => 'auth',
            remote => { proxy_url => $apx->url,
                        proxy_username => 'pt-proxy-user',
                        proxy_password => 'pt-proxy-pass', %no_retry });
my $direct = setup_cache($t, $reg->url, base_path => 'direct',
                         remote => { %no_retry });

my %accept = (Accept => $PT::Images::ACCEPT);
my $port = $reg->port;
my $tport = $treg->port;

sub pull {
    my ($base, $ref, $out) = @_;
    return skopeo('copy', '--quiet', '--src-tls-verify=false',
                  'docker://' . cache_ref($t, $ref, $base), "dir:$dir/$out");
}

sub proxied_paths {
    my ($p) = @_;
    return map { $_->{url} =~ m{^http://127\.0\.0\.1:\Q$port\E(/\S*)} ? $1 : () }
           grep { $_->{method} eq 'GET' } $p->requests;
}


# an http upstream through the proxy: every request, blobs included

$px->reset_requests;
$reg->reset_requests;

my ($rc, $out) = pull('proxied', 'library/hello:1.0', 'proxied');
is($rc, 0, 'through tinyproxy: skopeo pulls the whole image') or diag($out);
is(file_digest("$dir/proxied/manifest.json"), $hello->{digest},
   '... its manifest');
is(file_digest("$dir/proxied/" . ($hello->{layers}[0] =~ s/^sha256://r)),
   $hello->{layers}[0], '... a layer, byte for byte');

my %seen = map { $_ => 1 } proxied_paths($px);
ok($seen{'/v2/library/hello/manifests/1.0'}, "the proxy's log has the manifest");
for my $b ($hello->{config}, @{ $hello->{layers} }) {
    ok($seen{"/v2/library/hello/blobs/$b"}, "... and blob $b");
}

my @up = $reg->requests;
is(scalar(@up), scalar(keys %seen),
   'the upstream saw those requests, no others') or diag(explain(\@up));


# an https upstream: CONNECT, and the remote's CA

$px->reset_requests;

my $r = $t->get('/v2/tunnel/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 200, 'an https upstream through the proxy: the manifest');
is($r->{headers}{'docker-content-digest'}, $thello->{digest}, '... its digest');

$r = $t->get("/v2/tunnel/library/hello/blobs/$thello->{layers}[0]");
is($r->{status}, 200, '... a blob');
is(sha256_digest($r->{content}), $thello->{layers}[0], '... its bytes');

my @connects = grep { $_->{method} eq 'CONNECT' } $px->requests;
ok(@connects >= 1, 'the proxy tunnelled it (CONNECT)');
ok(!grep({ $_->{url} ne "127.0.0.1:$tport" } @connects),
   "... to the upstream's address only") or diag(explain(\@connects));
is(scalar(grep { $_->{method} ne 'CONNECT' } $px->requests), 0,
   '... nothing in clear');


# an https:// proxy: TLS to the proxy, checked against the remote's CA

{
    my $tls = PT::Stunnel->new(cert => $psrv->{cert}, key => $psrv->{key},
                               connect => $px->port)->start;
    setup_cache($t, $reg->url, base_path => 'tlsproxy',
                remote => { proxy_url => $tls->url, ca_cert => $ca->ca_text,
                            %no_retry });
    setup_cache($t, $reg->url, base_path => 'tlsproxy-other',
                remote => { proxy_url => $tls->url,
                            ca_cert => $other->ca_text, %no_retry });
    setup_cache($t, $reg->url, base_path => 'tlsproxy-noverify',
                remote => { proxy_url => $tls->url, %no_retry,
                            tls_validation => JSON::PP::false() });

    $px->reset_requests;
    my $r = $t->get('/v2/tlsproxy/library/hello/manifests/1.1',
                    headers => \%accept);
    is($r->{status}, 200, 'an https:// proxy the remote\'s CA signed: the manifest');
    is_deeply([ proxied_paths($px) ], [ '/v2/library/hello/manifests/1.1' ],
              '... through it (tinyproxy behind stunnel)');

    $r = $t->get('/v2/tlsproxy-other/library/hello/manifests/1.1',
                 headers => \%accept);
    is_oci_error($r, 502, 'UNAVAILABLE', 'an https:// proxy another CA signed: 502');
    like($t->error_log, qr/failed \(through the remote's proxy\): .*(certificate|SSL)/i,
         '... the error log says the proxy\'s certificate was refused');

    $r = $t->get('/v2/tlsproxy-noverify/library/hello/manifests/1.1',
                 headers => \%accept);
    is($r->{status}, 200, '... and tls_validation false reaches it');
    $tls->stop;
}


# a proxy that wants credentials

$r = $t->get('/v2/noauth/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE', 'a proxy wanting credentials, none: 502');
like($t->error_log, qr/pullthrough: upstream answered 407 for "http:\/\/127\.0\.0\.1:\Q$port\E\/v2\/library\/hello\/manifests\/1\.0"/,
     '... the error log has the proxy\'s 407');

$apx->reset_requests;
($rc, $out) = pull('auth', 'library/hello:1.0', 'auth');
is($rc, 0, 'proxy_username and proxy_password: the pull succeeds') or diag($out);
is(file_digest("$dir/auth/manifest.json"), $hello->{digest}, '... its manifest');
ok(scalar(grep { $_->{url} =~ m{/manifests/1\.0$} } $apx->requests) >= 1,
   '... through that proxy');

# (hello:1.0's blobs were in the store already: a blob of 1.1 now)
$apx->reset_requests;
$r = $t->get("/v2/auth/library/hello/blobs/$hello11->{layers}[-1]");
is($r->{status}, 200, '... a blob');
is(sha256_digest($r->{content}), $hello11->{layers}[-1], '... its bytes');
is(scalar(grep { $_->{url} =~ m{/blobs/\Q$hello11->{layers}[-1]\E$} }
          $apx->requests), 1, '... through that proxy too');

$r = $t->get('/v2/noauth/library/hello/manifests/1.1', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE',
             '... while the remote without them still gets a 502');

# proxy_url set, then cleared: the next upstream contact follows

$px->reset_requests;
$r = $t->get("/v2/direct/library/hello/blobs/$hello11->{layers}[-1]");
is($r->{status}, 200, 'a remote without proxy: a blob');
is(scalar(proxied_paths($px)), 0, '... not through the proxy');

$r = $t->patch($direct->{remote_obj}{pulp_href}, { proxy_url => $px->url });
ok($r->{status} == 202 || $r->{status} == 200, 'proxy_url set');

$r = $t->get('/v2/direct/library/hello/manifests/1.1', headers => \%accept);
is($r->{status}, 200, '... the next manifest');
is_deeply([ proxied_paths($px) ], [ '/v2/library/hello/manifests/1.1' ],
          '... came through the proxy');

$r = $t->patch($direct->{remote_obj}{pulp_href}, { proxy_url => undef });
ok($r->{status} == 202 || $r->{status} == 200, 'proxy_url cleared');

$px->reset_requests;
$r = $t->get("/v2/direct/library/hello/blobs/$hello11->{config}");
is($r->{status}, 200, '... the next blob');
is(scalar(proxied_paths($px)), 0, '... not through the proxy');


# many pulls at once through the proxy: transfers run side by side

setup_cache($t, $reg->url, base_path => 'crowd',
            remote => { proxy_url => $px->url });
{
    my @refs = ('library/hello:1.0', 'library/hello:1.1', 'team/app:1.0',
                'team/app:1.1');
    my $res = parallel(8, sub {
        my ($i) = @_;
        my $ref = $refs[$i % @refs];
        my ($rc, $text) = pull('crowd', $ref, "crowd-$i");
        return { rc => $rc, text => $text, ref => $ref,
                 digest => $rc ? '' : file_digest("$dir/crowd-$i/manifest.json") };
    });
    is(scalar(grep { $_->{rc} == 0 } @$res), 8, '8 parallel pulls through the proxy')
        or diag(explain($res));
    is(scalar(grep { $_->{digest} eq $img->{ $_->{ref} }{digest} } @$res), 8,
       '... each with its manifest');
}


# the proxy down: uncached content is a 502, cached content is served

$px->stop;

$r = $t->get('/v2/proxied/library/hello/manifests/1.1', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE', 'the proxy down: 502');
like($t->error_log, qr/"http:\/\/127\.0\.0\.1:\Q$port\E\/v2\/library\/hello\/manifests\/1\.1" failed \(through the remote's proxy\)/,
     '... the error log names the proxy');

$r = $t->get("/v2/proxied/library/hello/blobs/$hello->{layers}[0]");
is($r->{status}, 200, '... a cached blob is still served');
is(sha256_digest($r->{content}), $hello->{layers}[0], '... its bytes');


# the proxy's credentials stay out of logs

unlike($t->error_log . slurp_cache_log(), qr/pt-proxy-pass/,
       'no proxy password in the logs');

sub slurp_cache_log { PT::Util::slurp($t->dir . '/cache.log') }

$t->stop;

done_testing;
