#!/usr/bin/perl

# Attacks on /v2/ through paths and names: traversal in every spelling,
# encoded separators, NUL and control bytes, uppercase, overlong and
# malformed names, tags and digests. Each gets an OCI error in JSON (never
# HTML, never a file), no upstream request, and the worker goes on.

use strict;
use warnings;

use Test::More;

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(openssl));

my $L = PT::Images::build('hello');
my $h10 = $L->{refs}{'hello-1.0'};
my $fake = PT::FakeUpstream->new(blob_dirs => [ "$L->{dir}/blobs" ],
                                 tags => { 'library/hello:1.0' => $h10->{digest} })->start;

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;
setup_cache($t, $fake->url, remote => { max_retries => 0 });

# a file outside the store that a traversal would reach
my $secret = $t->dir . '/nginx.conf';
ok(-f $secret, 'a file outside the store exists');

my $hex = substr($h10->{digest}, 7);
# nginx resolves dot-dot segments first: these leave /v2/, and the module
for my $c ([ "/v2/cache/../../nginx.conf", 'dot-dot' ],
           [ "/v2/cache/%2e%2e/%2e%2e/nginx.conf", 'encoded dot-dot' ],
           [ "/v2/../nginx.conf", 'dot-dot out of /v2/' ]) {
    my ($path, $what) = @$c;
    my $r = $t->get($path);
    is($r->{status}, 404, "$what: 404 (nginx resolved it out of /v2/)");
    unlike($r->{content}, qr/pullthrough_store|worker_processes/, "$what: no file");
}

my @cases = (
    [ "/v2/cache/library/hello/blobs/sha256:..%2f..%2fnginx.conf", 'a digest with encoded slashes' ],
    [ "/v2/cache/library/hello/blobs/SHA256:$hex", 'an uppercase algorithm' ],
    [ "/v2/cache/library/hello/blobs/sha256:" . uc($hex), 'uppercase hex' ],
    [ "/v2/cache/library/hello/blobs/sha256:" . substr($hex, 1), 'a short digest' ],
    [ "/v2/cache/library/hello/blobs/sha512:$hex", 'sha512 of sha256 length' ],
    [ "/v2/cache/library/hello/blobs/md5:0123456789abcdef0123456789abcdef", 'another algorithm' ],
    [ "/v2/cache/Library/hello/manifests/1.0", 'an uppercase name' ],
    [ "/v2/cache/library/hello/manifests/1.0%0d%0aX-Injected:%201", 'CRLF in a tag' ],
    [ "/v2/cache/library/hello/manifests/" . ('a' x 129), 'a tag of 129 characters' ],
    [ "/v2/cache/" . join('/', ('a') x 300) . "/manifests/1.0", 'a name of 300 components' ],
    [ "/v2/cache/library/hello/manifests/..", 'a tag ..' ],
    [ "/v2/cache/library/hello/manifests/%2e%2e%2fx", 'an encoded tag ../x' ],
    [ "/v2/cache/library/hello/tags/list?n=-1", 'a negative n' ],
    [ "/v2/cache/library/hello/tags/list?n=99999999999999999999", 'an n past 64 bits' ],
);

for my $c (@cases) {
    my ($path, $what) = @$c;
    $fake->reset_requests;
    my $r = $t->get($path);
    ok($r->{status} >= 400 && $r->{status} < 500 || $r->{status} == 200 && $path =~ /tags\/list/,
       "$what: refused ($r->{status})");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$what: JSON, not HTML");
    unlike($r->{content}, qr/pullthrough_store|worker_processes|<html/i, "$what: no file, no page");
    is(scalar($fake->requests), 0, "$what: no upstream request");
}

# what nginx itself refuses (a NUL, encoded or not) never reaches the module
my $nul = $t->get("/v2/cache/library/hello/blobs/sha256:$hex%00");
is($nul->{status}, 400, 'an encoded NUL: 400 from nginx');
my $raw = $t->raw("GET /v2/cache/library/hello/manifests/1.0\x00x HTTP/1.0\r\n\r\n");
ok($raw->{status} >= 400, 'a NUL in the request line: refused');
is($t->get("/v2/cache/library/hello/manifests/1.0", headers => { Accept => $PT::Images::ACCEPT })->{status},
   200, 'the cache still serves');

$t->stop;
$t->check_error_log;

done_testing;
