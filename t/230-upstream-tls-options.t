#!/usr/bin/perl

# A remote's own TLS settings, which nginx's proxy module cannot take per
# remote: such remotes are reached through libcurl. Debian's docker-registry
# serves https with a certificate from a test CA: ca_cert trusts it (and
# only it: another CA's certificate is refused, with a clear log line), an
# edit of ca_cert applies at the next request; a registry that demands a
# client certificate (mutual TLS, http.tls.clientcas) is refused without
# client_cert/client_key, with another CA's client certificate, and served
# with the right one, skopeo's whole pull included. No key in any log.

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
use PT::Util qw(slurp need_tools);

need_tools(qw(docker-registry skopeo openssl curl));

my $dir = tempdir('pt-230-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

mkdir "$dir/$_" for qw(ca other);
my $ca = PT::Certs->new(dir => "$dir/ca");
my $other = PT::Certs->new(dir => "$dir/other", cn => 'pt other CA');

my $srv = $ca->server(name => 'srv', ip => ['127.0.0.1']);
my $cli = $ca->client(name => 'cli', cn => 'pt cache');
my $stranger = $other->client(name => 'stranger', cn => 'pt stranger');

# an https upstream, and one that demands a client certificate
my $reg = PT::Registry->new(tls => { cert => $srv->{cert},
                                     key => $srv->{key} })->start;
my $img = PT::Images::seed($reg, 'hello');

my $mreg = PT::Registry->new(tls => { cert => $srv->{cert}, key => $srv->{key},
                                      clientcas => $ca->ca_pem,
                                      client_cert => $cli->{cert},
                                      client_key => $cli->{key} })->start;
my $mimg = $mreg->without_auth(sub { PT::Images::seed($mreg, 'hello') });

my $hello = $img->{'library/hello:1.0'};
my $mhello = $mimg->{'library/hello:1.0'};

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;

my %no_retry = (max_retries => 0);

my $trusting = setup_cache($t, $reg->url, base_path => 'ca',
    remote => { ca_cert => $ca->ca_text, %no_retry });
my $wrong = setup_cache($t, $reg->url, base_path => 'wrongca',
    remote => { ca_cert => $other->ca_text, %no_retry });
setup_cache($t, $mreg->url, base_path => 'nocert',
    remote => { ca_cert => $ca->ca_text, %no_retry });
setup_cache($t, $mreg->url, base_path => 'mtls',
    remote => { ca_cert => $ca->ca_text, client_cert => $cli->{cert_text},
                client_key => $cli->{key_text}, %no_retry });
setup_cache($t, $mreg->url, base_path => 'stranger',
    remote => { ca_cert => $ca->ca_text,
                client_cert => $stranger->{cert_text},
                client_key => $stranger->{key_text}, %no_retry });
setup_cache($t, $mreg->url, base_path => 'mtls-noverify',
    remote => { tls_validation => JSON::PP::false(),
                client_cert => $cli->{cert_text},
                client_key => $cli->{key_text}, %no_retry });

my %accept = (Accept => $PT::Images::ACCEPT);

sub pull {
    my ($base, $img, $out) = @_;
    my ($rc, $text) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                             'docker://' . cache_ref($t, 'library/hello:1.0',
                                                     $base),
                             "dir:$dir/pull-$out");
    return ($rc, $text);
}


# ca_cert: the remote's CA is trusted

my $r = $t->get('/v2/ca/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 200, 'ca_cert: the manifest of an upstream it signed');
is($r->{headers}{'docker-content-digest'}, $hello->{digest},
   '... the upstream digest');

my ($rc, $out) = pull('ca', $hello, 'ca');
is($rc, 0, 'ca_cert: skopeo pulls the whole image') or diag($out);
is(file_digest("$dir/pull-ca/manifest.json"), $hello->{digest}, '... its manifest');
is(file_digest("$dir/pull-ca/" . ($hello->{layers}[0] =~ s/^sha256://r)),
   $hello->{layers}[0], '... and a layer, byte for byte');
ok(-f blob_file($t, $hello->{layers}[0]), '... stored in the cache');


# another CA: refused, and said why

$r = $t->get('/v2/wrongca/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE', "ca_cert of another CA: 502");
like($t->error_log, qr/pullthrough: "https:\/\/127\.0\.0\.1:\d+\/v2\/library\/hello\/manifests\/1\.0" failed: SSL certificate problem/,
     '... the error log says the certificate was refused');

$r = $t->get("/v2/wrongca/library/hello/blobs/$hello->{layers}[1]");
is_oci_error($r, 502, 'UNAVAILABLE',
             '... blobs too, though the store has it for another repository');

# the CA edited: the next request uses it
$r = $t->patch($wrong->{remote_obj}{pulp_href}, { ca_cert => $ca->ca_text });
ok($r->{status} == 202 || $r->{status} == 200, 'ca_cert edited');

$r = $t->get("/v2/wrongca/library/hello/blobs/$hello->{layers}[1]");
is($r->{status}, 200, '... the next request trusts the new CA');
is(sha256_digest($r->{content}), $hello->{layers}[1], '... the right bytes');


# mutual TLS

$r = $t->get('/v2/nocert/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE',
             'a registry demanding a client certificate, none given: 502');
like($t->error_log, qr/pullthrough: "https:\/\/127\.0\.0\.1:\d+\/v2\/library\/hello\/manifests\/1\.0" failed/,
     '... and a line in the error log');

$r = $t->get('/v2/stranger/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE', 'a client certificate of another CA: 502');

$r = $t->get('/v2/mtls/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 200, 'client_cert and client_key: the manifest');
is($r->{headers}{'docker-content-digest'}, $mhello->{digest},
   '... the upstream digest');

($rc, $out) = pull('mtls', $mhello, 'mtls');
is($rc, 0, 'mutual TLS: skopeo pulls the whole image') or diag($out);
is(file_digest("$dir/pull-mtls/manifest.json"), $mhello->{digest},
   '... its manifest');
for my $l (@{ $mhello->{layers} }) {
    is(file_digest("$dir/pull-mtls/" . ($l =~ s/^sha256://r)), $l,
       "... layer $l");
}

$r = $t->get('/v2/mtls-noverify/library/hello/manifests/1.0',
             headers => \%accept);
is($r->{status}, 200, 'client certificate with tls_validation false');

# connections are reused (libcurl keeps them), never across settings
$r = $t->get('/v2/nocert/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE',
             'after mutual TLS, the remote without a certificate: still 502');
$r = $t->get('/v2/stranger/library/hello/manifests/1.0', headers => \%accept);
is_oci_error($r, 502, 'UNAVAILABLE', '... and the stranger\'s too');

# the registry saw the client certificate's requests, as TLS ones
my @seen = grep { m{GET /v2/library/hello/blobs/} } split /\n/, $mreg->access_log;
ok(@seen >= @{ $mhello->{layers} }, 'the mTLS registry served the blobs')
    or diag(scalar @seen);


# secrets stay out of logs

my $logs = $t->error_log . slurp($t->dir . '/cache.log');
my ($key_line) = grep { length > 40 && !/-----/ } split /\n/, $cli->{key_text};
unlike($logs, qr/\Q$key_line\E/, 'no line of the client key in the logs');

# and remotes are still listed without their keys
$r = $t->get($REMOTES . '?name=pt-mtls');
ok(!exists $r->{json}{results}[0]{client_key}, 'client_key is not shown');
like($r->{json}{results}[0]{client_cert} // '', qr/BEGIN CERTIFICATE/,
     'client_cert is');

$t->stop;
$reg->stop;
$mreg->stop;

done_testing;
