#!/usr/bin/perl

# An upstream behind TLS (Debian's docker-registry with a certificate from
# a test CA): verified by default against the system's trust store, so the
# test CA's certificate is refused with a 502 and a clear error log line;
# a remote with tls_validation false reaches it.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl curl));

my $dir = tempdir('pt-220-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

# a test CA and a certificate for 127.0.0.1 it signs
sub openssl {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) { open STDERR, ">", "/dev/null"; exec "openssl", @_ or exit 127 }
    waitpid $pid, 0;
    $? == 0 or die "openssl @_ failed\n";
}

openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
        '-subj', '/CN=pt test CA', '-keyout', "$dir/ca.key",
        '-out', "$dir/ca.pem");
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
        '-keyout', "$dir/server.key", '-out', "$dir/server.csr");
{
    open my $fh, '>', "$dir/ext" or die;
    print $fh "subjectAltName = IP:127.0.0.1\n";
}
openssl('x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.pem",
        '-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
        '-extfile', "$dir/ext", '-out', "$dir/server.pem");

my $reg = PT::Registry->new(tls => { cert => "$dir/server.pem",
                                     key => "$dir/server.key" })->start;
my $img = PT::Images::seed($reg, 'hello');
my $hello = $img->{'library/hello:1.0'};

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;

setup_cache($t, $reg->url, base_path => 'verified',
            remote => { max_retries => 0 });
setup_cache($t, $reg->url, base_path => 'trusting',
            remote => { tls_validation => JSON::PP::false(),
                        max_retries => 0 });

my %accept = (Accept => $PT::Images::ACCEPT);

my $r = $t->get('/v2/verified/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 502, 'a certificate the system does not trust: 502');
is(eval { $r->{json}{errors}[0]{code} }, 'UNAVAILABLE', '... in OCI error format');
like($t->error_log, qr/upstream SSL certificate verify error/,
     '... and the error log says the certificate was refused');

$r = $t->get("/v2/verified/library/hello/blobs/$hello->{layers}[0]");
is($r->{status}, 502, 'blobs too');

$r = $t->get('/v2/trusting/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 200, 'tls_validation false: the manifest');
is($r->{headers}{'docker-content-digest'}, $hello->{digest},
   '... the upstream digest');

$r = $t->get("/v2/trusting/library/hello/blobs/$hello->{layers}[0]");
is($r->{status}, 200, 'tls_validation false: a blob');
is('sha256:' . Digest::SHA::sha256_hex($r->{content}), $hello->{layers}[0],
   '... its bytes');

# the setting of one remote is not the other's
$r = $t->get("/v2/verified/library/hello/blobs/$hello->{layers}[1]");
is($r->{status}, 502, 'the verifying remote still refuses');

$t->stop;
$reg->stop;

done_testing;
