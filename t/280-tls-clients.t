#!/usr/bin/perl

# Clients that verify TLS: the cache behind nginx's own "listen ... ssl
# http2", with a certificate of a CA the test makes, as docs/directives.md
# shows it. skopeo and podman pull through it with verification on (the CA
# in a certs.d directory, as /etc/containers/certs.d/<host:port>/ holds
# it), over HTTP/2 where they use it; curl sees HTTP/2 and the registry's
# answers, blobs included, whole.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Copy qw(copy);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Certs;
use PT::Util qw(need_tools missing_tools run_output);

need_tools(qw(docker-registry skopeo openssl curl));

my $ACCEPT = $PT::Images::ACCEPT;
my $dir = tempdir('pt-280-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello multi));
my $hello = $img->{'library/hello:1.0'};

my $ca = PT::Certs->new(dir => $dir);
my $srv = $ca->server(name => 'cache', dns => [ 'localhost' ], ip => [ '127.0.0.1' ]);

# the admin API on plain HTTP (PORT), the registry on TLS and HTTP/2 (PORT2)
my $t = PT::Nginx->new(conf => cache_conf(http => <<"EOC"))->start;
server {
    listen 127.0.0.1:%%PORT2%% ssl http2;
    ssl_certificate $srv->{cert};
    ssl_certificate_key $srv->{key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location /v2/ { pullthrough_registry; }
}
EOC
setup_cache($t, $reg->url);

my $host = '127.0.0.1:' . $t->port(2);
mkdir "$dir/certs.d";
copy($ca->ca_pem, "$dir/certs.d/ca.crt") or die "copy: $!";

# curl: HTTP/2, the CA trusted
my $out = run_output('curl', '-s', '--http2', '--cacert', $ca->ca_pem, '-o', "$dir/blob",
                     '-w', '%{http_version} %{http_code}',
                     "https://$host/v2/cache/library/hello/blobs/$hello->{layers}[1]");
is($out, '2 200', 'curl: a blob over HTTP/2 and TLS, the certificate verified');
is(file_digest("$dir/blob"), $hello->{layers}[1], '... its bytes whole');
$out = run_output('curl', '-s', '--http2', '--cacert', $ca->ca_pem, '-H', "Accept: $ACCEPT",
                  '-w', ' %{http_version} %{http_code}',
                  "https://$host/v2/cache/library/multi/manifests/1.0");
like($out, qr/"manifests".* 2 200$/s, '... an index over HTTP/2 (a miss)');

# skopeo with verification on: the CA in a certs.d directory
my ($rc, $o) = skopeo({ timeout => 60 }, 'copy', '--quiet', '--src-cert-dir', "$dir/certs.d",
                      "docker://$host/cache/library/hello:1.1", "dir:$dir/skopeo");
is($rc, 0, 'skopeo copy with TLS verification on') or diag($o);
is(file_digest("$dir/skopeo/manifest.json"), $img->{'library/hello:1.1'}{digest}, '... the right manifest');

($rc, $o) = skopeo({ timeout => 30 }, 'inspect', "docker://$host/cache/library/hello:1.1");
isnt($rc, 0, '... and without the CA, skopeo refuses the certificate');
like($o, qr/certificate|x509/i, '... saying why');

SKIP: {
    my $why = missing_tools('podman');
    skip $why, 1 if $why;
    ($rc, $o) = podman({ timeout => 120 }, "$dir/podman", 'pull', '--quiet', '--cert-dir', "$dir/certs.d",
                       "$host/cache/library/hello:1.0");
    skip "podman cannot run here: $o", 1 if $rc && $o =~ /cannot|permission|not permitted|newuidmap|user namespace/i;
    is($rc, 0, 'podman pull with TLS verification on') or diag($o);
}

$t->stop;

done_testing;
