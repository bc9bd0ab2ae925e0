#!/usr/bin/perl

# What the cache does with what a real registry would never send, from a
# fake upstream (PT::FakeUpstream): blobs with wrong bytes or cut short
# (never stored, the client's connection is cut before the last byte, the
# next request fetches again), manifests that do not match their digest or
# are too large (502 MANIFEST_INVALID, nothing stored), sha512 blobs,
# redirects to another host or path, redirect loops, the Accept list sent
# upstream, a second client joining a fill in progress, and clients that
# come while a fill commits joining it.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha512_hex);
use File::Temp ();
use MIME::Base64 ();
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(skopeo openssl curl));

my %MT = %PT::Images::MT;
my $ACCEPT = $PT::Images::ACCEPT;
my $JSON = JSON::PP->new->utf8->canonical;
my $KiB = 1024;

my %L = map { $_ => PT::Images::build($_) } qw(hello multi app);
my $h10 = $L{hello}{refs}{'hello-1.0'};
my $h11 = $L{hello}{refs}{'hello-1.1'};
my %layer = map { %{ $L{$_}{layers} } } keys %L;    # name => { digest, size }
my @blob_dirs = map { "$L{$_}{dir}/blobs" } sort keys %L;

sub layout_bytes {
    my ($digest) = @_;
    for my $d (@blob_dirs) {
        my $f = "$d/sha256/" . substr($digest, 7);
        next unless -f $f;
        open my $fh, '<:raw', $f or die "$f: $!";
        local $/;
        return scalar <$fh>;
    }
    die "no blob $digest";
}

# manifests of a given size: hello 1.0's, padded in an annotation
sub padded_manifest {
    my ($size) = @_;
    my $m = $JSON->decode(layout_bytes($h10->{digest}));
    $m->{annotations}{pad} = '';
    my $n = $size - length $JSON->encode($m);
    die "cannot pad to $size" if $n < 0;
    $m->{annotations}{pad} = 'x' x $n;
    return $JSON->encode($m);
}

my $exact = padded_manifest(4 * $KiB);
my $huge = padded_manifest(4 * $KiB + 1);
my $sha512_ok = join '', map { chr(($_ * 7 + 3) % 256) } 1 .. 10000;
my $sha512_bad = join '', map { chr(($_ * 11 + 5) % 256) } 1 .. 10000;
# blobs of 2 MiB that no other part of the test asks for: fills that
# commit while other clients come
my $filler = '.' x (2 * 1024 * 1024);
my @committing = map { "commit $_ $filler" } 1 .. 4;
my %mem = (
    (map { sha256_digest($_) => $_ } @committing),
    sha256_digest($exact) => $exact,
    sha256_digest($huge) => $huge,
    'sha512:' . sha512_hex($sha512_ok) => $sha512_ok,
    'sha512:' . sha512_hex($sha512_bad) => $sha512_bad,
);

# the "CDN" a blob redirect points to
my $cdn = PT::FakeUpstream->new(blob_dirs => \@blob_dirs, hook => sub {
    my ($req, $fake) = @_;
    return unless $req->{path} =~ m{^/cdn/(sha256:[0-9a-f]{64})$};
    my $f = $fake->blob_file($1) or return PT::FakeUpstream::error(404, 'BLOB_UNKNOWN');
    return [ 200, [ 'Content-Type' => 'application/octet-stream' ], { file => $f } ];
})->start;
my $cdn_url = $cdn->url;

my $BASIC = 'Basic ' . MIME::Base64::encode_base64('alice:secret', '');

sub flag_of { 'fixed-' . substr($_[0], 7, 12) }

my $fake = PT::FakeUpstream->new(
    blob_dirs => \@blob_dirs,
    blobs => \%mem,
    tags => {
        'library/hello:1.0' => $h10->{digest},
        'library/redirect:1.0' => $h10->{digest},
        'library/huge:1.0' => sha256_digest($huge),
        'library/exact:1.0' => sha256_digest($exact),
    },
    hook => sub {
        my ($req, $fake) = @_;
        my $p = $req->{path};
        my @ct = ('Content-Type' => 'application/octet-stream',
                  'Docker-Distribution-API-Version' => 'registry/2.0');

        if ($p =~ m{^/cdn-local/(sha256:[0-9a-f]{64})$}) {
            return [ 200, \@ct, { file => $fake->blob_file($1) } ];
        }

        my ($repo, $kind, $ref) = $p =~ m{^/v2/(.+)/(manifests|blobs)/([^/]+)$}
            or return;

        if ($repo eq 'library/corrupt' && $kind eq 'blobs') {
            return if defined $fake->flag(flag_of($ref));
            my $f = $fake->blob_file($ref);
            return [ 200, \@ct, { file => $f, corrupt => 1 } ] if $f;
            my $b = $fake->{blobs}{$ref} // return;
            substr($b, 100, 1) = chr(ord(substr($b, 100, 1)) ^ 1);
            return [ 200, \@ct, $b ];
        }
        if ($repo eq 'library/short' && $kind eq 'blobs') {
            return if defined $fake->flag(flag_of($ref));
            my $f = $fake->blob_file($ref);
            return [ 200, \@ct, { file => $f, truncate => int((-s $f) / 2) } ];
        }
        if ($repo eq 'library/chunked' && $kind eq 'blobs') {
            # no Content-Length: the body ends when the connection closes;
            # wrong bytes until the test sets the flag
            my $f = $fake->blob_file($ref) or return;
            my $bad = !defined $fake->flag(flag_of($ref));
            return [ 200, \@ct, sub {
                my ($c) = @_;
                open my $fh, '<:raw', $f or return;
                local $/;
                my $b = <$fh>;
                substr($b, 10, 1) = chr(ord(substr($b, 10, 1)) ^ 1) if $bad;
                PT::FakeUpstream::_write($c, $b);
            } ];
        }
        if ($repo eq 'library/stallbody' && $kind eq 'blobs') {
            return [ 200, \@ct, { file => $fake->blob_file($ref),
                                  pause_at => 512 * 1024 } ];
        }
        if ($repo eq 'library/gate' && $kind eq 'blobs') {
            return [ 200, \@ct, { file => $fake->blob_file($ref),
                                  pause_at => 2048, wait_flag => 'go-join' } ];
        }
        if ($repo eq 'library/liar' && $kind eq 'manifests') {
            # hello 1.1's bytes, announced as 1.0 (by tag) or whatever was
            # asked for (by digest)
            return [ 200, [ 'Content-Type' => $MT{oci_manifest},
                            'Docker-Content-Digest' =>
                                $ref =~ /:/ ? $ref : $h10->{digest} ],
                     layout_bytes($h11->{digest}) ];
        }
        if ($repo eq 'library/nodigest' && $kind eq 'manifests') {
            # no Docker-Content-Digest: the cache computes it
            return [ 200, [ 'Content-Type' => $MT{oci_manifest} ],
                     layout_bytes($h10->{digest}) ];
        }
        if ($repo eq 'library/hugestream' && $kind eq 'manifests') {
            # no Content-Length: the body ends when the connection closes
            return [ 200, [ 'Content-Type' => $MT{oci_manifest},
                            'Docker-Content-Digest' => sha256_digest($huge) ],
                     sub { PT::FakeUpstream::_write($_[0], $huge) } ];
        }
        if ($repo eq 'library/authredirect') {
            # Basic auth here; the blob itself on the CDN
            return [ 401, [ 'WWW-Authenticate' => 'Basic realm="fake"',
                            'Content-Type' => 'application/json' ],
                     '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}' ]
                unless ($req->{headers}{authorization} // '') eq $BASIC;
            return [ 307, [ Location => "$cdn_url/cdn/$ref?sig=abc" ], '' ]
                if $kind eq 'blobs';
            return;
        }
        if ($repo eq 'library/redirect' && $kind eq 'blobs') {
            return [ 307, [ Location => "$cdn_url/cdn/$ref?sig=abc" ], '' ];
        }
        if ($repo eq 'library/relredirect' && $kind eq 'blobs') {
            return [ 302, [ Location => "/cdn-local/$ref" ], '' ];
        }
        if ($repo eq 'library/loop' && $kind eq 'blobs') {
            return [ 302, [ Location => 'http://' . $fake->host
                                        . "/v2/library/loop/blobs/$ref" ], '' ];
        }
        return;
    },
)->start;

my $t = PT::Nginx->new(conf => cache_conf(registry => <<'EOF'));
proxy_connect_timeout 3s;
            proxy_read_timeout 3s;
            proxy_send_timeout 3s;
            pullthrough_manifest_max_size 4k;
EOF
$t->start;
setup_cache($t, $fake->url, remote => { username => 'alice', password => 'secret' });

sub fake_gets {
    my ($re) = @_;
    return scalar(my @r = $fake->requests_matching('GET', $re));
}

sub repo_names {
    return [ sort map { $_->{name} }
             @{ list_all($t, "$API/repositories/container/container/") } ];
}

sub explain_get {
    my ($r, $size) = @_;
    return "status $r->{status}, $r->{length} of " . ($size // '?')
        . ' bytes, ' . ($r->{eof} ? 'closed' : 'not closed')
        . ($r->{error} ? ", $r->{error}" : '')
        . sprintf(', %.1f s', $r->{seconds});
}

sub no_temp_files {
    my ($what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(wait_for(sub { !tmp_files($t) }, 10), "$what: no temp file left")
        or diag(join ' ', tmp_files($t));
}


# the Accept list sent upstream for a manifest

{
    $fake->reset_requests;
    my $r = http_get($t, '/v2/cache/library/hello/manifests/1.0',
                     headers => { Accept => $MT{v2s2} });
    is($r->{status}, 200, 'manifest through the fake upstream: 200');
    my ($req) = $fake->requests_matching('GET', qr{/manifests/1\.0$});
    my $accept = $req ? $req->{headers}{accept} // '' : '';
    for my $type (@MT{qw(v2s2 v2_list oci_manifest oci_index)}) {
        like($accept, qr/(?:^|[\s,])\Q$type\E(?:[;,\s]|$)/,
             "upstream Accept has $type");
    }
}


# a blob with wrong bytes: the client sees a failure, nothing is stored,
# the next request fetches it again

for my $case ([ 'sha256, 1 MiB', $layer{'multi-base'}{digest}, $layer{'multi-base'}{size} ],
              [ 'sha512, 10 KB', 'sha512:' . sha512_hex($sha512_bad), length $sha512_bad ])
{
    my ($what, $d, $size) = @$case;
    my $path = "/v2/cache/library/corrupt/blobs/$d";
    my $elog = length $t->error_log;
    $fake->reset_requests;

    my $r = stream_get($t, $path, idle_timeout => 4);
    is($r->{status}, 200, "wrong bytes ($what): the answer had begun");
    is($r->{expected}, $size, "wrong bytes ($what): with the upstream's length");
    ok(!$r->{complete} && $r->{length} < $size,
       "wrong bytes ($what): the body is cut before its last byte")
        or diag("got $r->{length} of $size bytes");
    ok($r->{eof}, "wrong bytes ($what): the connection was closed")
        or diag(explain_get($r, $size));
    like(substr($t->error_log, $elog), qr/does not match its digest/,
         "wrong bytes ($what): error.log says why");
    ok(!-e blob_file($t, $d), "wrong bytes ($what): not stored");
    no_temp_files("wrong bytes ($what)");

    # curl sees it too: a transfer error (18: partial file, 56: receive
    # error), not its timeout (28)
    my ($rc, $out) = run_cmd({ timeout => 20 }, 'curl', '-s', '-m', '4',
                             '-o', '/dev/null',
                             '-w', '%{http_code} %{size_download}',
                             $t->base_url . $path);
    ok($rc == 18 || $rc == 56, "wrong bytes ($what): curl reports a broken transfer")
        or diag("curl exit status $rc: $out");
    is(fake_gets(qr/\Q$d\E/), 2, "wrong bytes ($what): each request went upstream");
    ok(!-e blob_file($t, $d), "wrong bytes ($what): still not stored");

    # the upstream mends its ways
    $fake->set_flag(flag_of($d));
    $r = stream_get($t, $path, idle_timeout => 4, keep => 1);
    my $got = $d =~ /^sha512/ ? 'sha512:' . sha512_hex($r->{content})
                              : sha256_digest($r->{content});
    ok($r->{complete} && $got eq $d,
       "wrong bytes ($what): then right bytes: a whole body");
    ok(wait_for(sub { -f blob_file($t, $d) }), "wrong bytes ($what): now stored");
    is(file_digest(blob_file($t, $d), $d =~ /^(sha\d+)/), $d,
       "wrong bytes ($what): the stored file matches");
    is(fake_gets(qr/\Q$d\E/), 3, "wrong bytes ($what): fetched a third time");
}


# a blob cut short by the upstream

{
    my $d = $layer{'multi-amd64'}{digest};
    my $size = $layer{'multi-amd64'}{size};
    my $path = "/v2/cache/library/short/blobs/$d";
    $fake->reset_requests;

    # either the answer had begun and is cut, or it had not and is an error
    my $r = stream_get($t, $path, idle_timeout => 4);
    ok($r->{status} == 200 ? !$r->{complete} && $r->{eof}
                           : $r->{status} >= 500 && $r->{status} < 600,
       'short body: a cut 200 or a 5xx') or diag(explain_get($r, $size));
    ok(!-e blob_file($t, $d), 'short body: not stored');
    no_temp_files('short body');
    $r = stream_get($t, $path, idle_timeout => 4);
    ok($r->{status} == 200 ? !$r->{complete} && $r->{eof}
                           : $r->{status} >= 500 && $r->{status} < 600,
       'short body: again') or diag(explain_get($r, $size));
    is(fake_gets(qr/\Q$d\E/), 2, 'short body: the next request fetched again');

    $fake->set_flag(flag_of($d));
    $r = stream_get($t, $path, idle_timeout => 4);
    ok($r->{complete} && $r->{sha256} eq $d, 'short body: then whole');
    ok(wait_for(sub { -f blob_file($t, $d) }), 'short body: then stored');
}


# a blob without Content-Length upstream: chunked to the client, which can
# tell a cut body from a whole one

{
    my $d = $h11->{config};
    my $url = $t->base_url . "/v2/cache/library/chunked/blobs/$d";
    my $dir = File::Temp::tempdir('pt-120-chunked-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @curl = ('curl', '-s', '-m', '4', '-o', "$dir/out", '-w', '%{http_code}');

    my ($rc, $out) = run_cmd({ timeout => 20 }, @curl, $url);
    ok($rc == 18 || $rc == 56,
       'no Content-Length, wrong bytes: curl reports a broken transfer')
        or diag("curl exit status $rc: $out");
    ok(!-e blob_file($t, $d), 'no Content-Length, wrong bytes: not stored');
    no_temp_files('no Content-Length, wrong bytes');

    $fake->set_flag(flag_of($d));
    ($rc, $out) = run_cmd({ timeout => 20 }, @curl, $url);
    is("$rc $out", '0 200', 'no Content-Length, right bytes: curl succeeds');
    is(file_digest("$dir/out"), $d, 'no Content-Length, right bytes: the blob');
    ok(wait_for(sub { -f blob_file($t, $d) }), 'no Content-Length, right bytes: stored');
    my $r = stream_get($t, "/v2/cache/library/chunked/blobs/$d");
    is($r->{headers}{'content-length'}, $h11->{config_size},
       'no Content-Length upstream: the hit has one');
}


# a blob whose upstream stops sending halfway: proxy_read_timeout (3 s)

{
    my $d = $layer{'app-b'}{digest};
    my $path = "/v2/cache/library/stallbody/blobs/$d";
    my $t0 = time;
    my $r = stream_get($t, $path, idle_timeout => 15);
    my $took = time - $t0;
    is($r->{status}, 200, 'upstream stalls mid-body: the answer had begun');
    ok(!$r->{complete}, 'upstream stalls mid-body: the body is cut');
    ok($took < 8, sprintf('upstream stalls mid-body: cut after %.1f s', $took));
    ok(!-e blob_file($t, $d), 'upstream stalls mid-body: not stored');
    no_temp_files('upstream stalls mid-body');
}


# manifests that do not match their digest

{
    $fake->reset_requests;
    my $r = http_get($t, '/v2/cache/library/liar/manifests/1.0',
                     headers => { Accept => $ACCEPT });
    is_oci_error($r, 502, 'MANIFEST_INVALID',
                 'manifest not matching its Docker-Content-Digest: 502 MANIFEST_INVALID');
    $r = http_get($t, "/v2/cache/library/liar/manifests/$h10->{digest}",
                  headers => { Accept => $ACCEPT });
    is_oci_error($r, 502, 'MANIFEST_INVALID',
                 'manifest not matching the digest asked for: 502 MANIFEST_INVALID');
    ok(!-e blob_file($t, $h11->{digest}), 'wrong manifests: their bytes not stored');
    is_oci_error(http_get($t, '/v2/cache/library/liar/tags/list'), 404,
                 'NAME_UNKNOWN', 'wrong manifests: no tag recorded');
    ok(!grep({ $_ eq 'cache/library/liar' } @{ repo_names() }),
       'wrong manifests: no repository');
    $r = http_get($t, '/v2/cache/library/liar/manifests/1.0',
                  headers => { Accept => $ACCEPT });
    is($r->{status}, 502, 'wrong manifest again: 502');
    is(scalar(my @m = $fake->requests_matching('GET', qr{/liar/manifests/})), 3,
       'wrong manifests: each request went upstream');
    like($t->error_log, qr/manifest from .* has digest .* expected .*not stored/,
         'wrong manifests: error.log says why');
}


# a manifest by tag without Docker-Content-Digest: its digest is computed

{
    my $r = http_get($t, '/v2/cache/library/nodigest/manifests/1.0',
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'no Docker-Content-Digest upstream: 200');
    is($r->{headers}{'docker-content-digest'}, $h10->{digest},
       'no Docker-Content-Digest upstream: computed');
    is($r->{content}, layout_bytes($h10->{digest}), '... the bytes');
    $r = http_get($t, "/v2/cache/library/nodigest/manifests/$h10->{digest}",
                  headers => { Accept => $ACCEPT });
    is($r->{status}, 200, '... then served by that digest');
    is_deeply(http_get($t, '/v2/cache/library/nodigest/tags/list')->{json}{tags},
              ['1.0'], '... and the tag recorded');
}


# manifests larger than pullthrough_manifest_max_size (4k here)

{
    my $r = http_get($t, '/v2/cache/library/exact/manifests/1.0',
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'manifest of exactly the limit: 200');
    is($r->{content}, $exact, '... its bytes');

    for my $repo (qw(huge hugestream)) {
        $r = http_get($t, "/v2/cache/library/$repo/manifests/1.0",
                      headers => { Accept => $ACCEPT });
        is_oci_error($r, 502, 'MANIFEST_INVALID',
                     "manifest one byte over the limit ($repo): 502 MANIFEST_INVALID");
        is_oci_error(http_get($t, "/v2/cache/library/$repo/tags/list"), 404,
                     'NAME_UNKNOWN', "manifest over the limit ($repo): no tag");
    }
    ok(!-e blob_file($t, sha256_digest($huge)), 'manifest over the limit: not stored');
}


# sha512 blobs are verified and stored under sha512/

{
    my $d = 'sha512:' . sha512_hex($sha512_ok);
    $fake->reset_requests;
    my $r = stream_get($t, "/v2/cache/library/hello/blobs/$d", keep => 1);
    ok($r->{complete} && $r->{content} eq $sha512_ok, 'sha512 blob: served');
    is($r->{headers}{'docker-content-digest'}, $d, 'sha512 blob: Docker-Content-Digest');
    ok(wait_for(sub { -f blob_file($t, $d) }), 'sha512 blob: stored under blobs/sha512/');
    like(blob_file($t, $d), qr{/blobs/sha512/[0-9a-f]{2}/[0-9a-f]{128}$}, '... path');
    $r = stream_get($t, "/v2/cache/library/hello/blobs/$d", keep => 1);
    ok($r->{complete} && $r->{content} eq $sha512_ok, 'sha512 blob: hit');
    is(fake_gets(qr/sha512/), 1, 'sha512 blob: fetched once');
}


# redirects: to another host (a CDN), to a path on the same host, in a loop

{
    my $dir = File::Temp::tempdir('pt-120-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $fake->reset_requests;
    $cdn->reset_requests;
    my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet',
                            '--src-tls-verify=false',
                            'docker://' . cache_ref($t, 'library/redirect:1.0'),
                            "dir:$dir/r");
    is($rc, 0, 'redirected blobs: skopeo pull succeeds') or diag($out);
    for my $d ($h10->{config}, @{ $h10->{layers} }) {
        my $f = "$dir/r/" . substr($d, 7);
        is(-f $f ? file_digest($f) : 'missing', $d, "redirected blob $d: pulled");
        is(-f blob_file($t, $d) ? file_digest(blob_file($t, $d)) : 'missing', $d,
           "redirected blob $d: stored");
    }
    my @redirects = $fake->requests_matching('GET', qr{/v2/library/redirect/blobs/});
    is(scalar @redirects, 3, 'redirected blobs: asked upstream once each');
    my @cdn = $cdn->requests;
    is_deeply([ sort map { $_->{uri} } @cdn ],
              [ sort map { "/cdn/$_?sig=abc" } $h10->{config}, @{ $h10->{layers} } ],
              'redirected blobs: fetched from the Location, query included');
    is_deeply([ grep { exists $_->{headers}{authorization} } @cdn ], [],
              'the other host never gets an Authorization header');

    # with credentials: the upstream gets them, the CDN it redirects to not
    $fake->reset_requests;
    $cdn->reset_requests;
    my $ad = $layer{'app-c'}{digest};
    my $ar = stream_get($t, "/v2/cache/library/authredirect/blobs/$ad",
                        idle_timeout => 10);
    ok($ar->{complete} && $ar->{sha256} eq $ad,
       'redirect after Basic auth: the blob') or diag(explain_get($ar));
    my @up = $fake->requests_matching('GET', qr{/library/authredirect/});
    ok(scalar(grep { ($_->{headers}{authorization} // '') eq $BASIC } @up),
       'redirect after Basic auth: the upstream got the credentials');
    my @c = $cdn->requests;
    is_deeply([ map { $_->{uri} } @c ], [ "/cdn/$ad?sig=abc" ],
              'redirect after Basic auth: the blob from the CDN');
    is_deeply([ grep { exists $_->{headers}{authorization} } @c ], [],
              'redirect after Basic auth: the CDN never gets the credentials');

    my $d = $layer{'hello-c'}{digest};
    my $r = stream_get($t, "/v2/cache/library/relredirect/blobs/$d");
    ok($r->{complete} && $r->{sha256} eq $d, 'relative redirect: followed');
    is(scalar(my @x = $fake->requests_matching('GET', qr{^/cdn-local/})), 1,
       'relative redirect: on the same host');

    $d = $layer{'app-a'}{digest};
    my $t0 = time;
    $r = http_get($t, "/v2/cache/library/loop/blobs/$d");
    ok($r->{status} >= 500 && $r->{status} < 600,
       "redirect loop: a 5xx ($r->{status})");
    ok(time - $t0 < 5, 'redirect loop: given up quickly');
    my $n = fake_gets(qr{/library/loop/});
    ok($n > 1 && $n <= 21, "redirect loop: $n requests, bounded");
    ok(!-e blob_file($t, $d), 'redirect loop: nothing stored');
    no_temp_files('redirect loop');
}


# a second client joins a fill in progress: one upstream request, both get
# the whole blob

{
    my $d = $layer{'multi-arm64'}{digest};
    my $path = "/v2/cache/library/gate/blobs/$d";
    my $dir = File::Temp::tempdir('pt-120-join-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $fake->reset_requests;
    my $mark = cache_log_mark($t);

    my $a = bg_stream_get($t, $path, started => "$dir/a", idle_timeout => 20);
    ok(wait_for(sub { -e "$dir/a" }, 10), 'join: the first client has bytes');
    ok(scalar(tmp_files($t)), 'join: a fill is running');
    my $b = bg_stream_get($t, $path, started => "$dir/b", idle_timeout => 20);
    ok(wait_for(sub { -e "$dir/b" }, 10), 'join: the second client has bytes');
    ok(!-e blob_file($t, $d), 'join: nothing stored before the fill ends');

    $fake->set_flag('go-join');
    my $ra = bg_result($a, 30);
    my $rb = bg_result($b, 30);
    ok($ra->{complete} && $ra->{sha256} eq $d, 'join: the first client got the blob');
    ok($rb->{complete} && $rb->{sha256} eq $d, 'join: the second client got the blob');
    is(fake_gets(qr/\Q$d\E/), 1, 'join: one upstream request');
    ok(wait_for(sub { -f blob_file($t, $d) }), 'join: stored');
    wait_for(sub { grep({ $_->{path} =~ /\Q$d\E/ } cache_log($t, $mark)) >= 2 });
    is_deeply([ sort map { $_->{cache} } grep { $_->{path} =~ /\Q$d\E/ } cache_log($t, $mark) ],
              [qw(JOIN MISS)], 'join: logged MISS and JOIN');
}


# clients that come while a fill commits (every byte written; the verdict,
# the fsync and the rename under way in a thread) join it, for the fill's
# repository and for another one: the blob is fetched once. The first
# client has all but the last byte, which waits for the verdict; the
# others' requests go at that moment, on connections opened before.

# the status and body digest of the answer on a socket of a raw request
sub raw_answer {
    my ($s) = @_;
    my $in = '';
    my $deadline = time + 20;
    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        last unless select(my $rout = $rin, undef, undef, 1) >= 0;
        my $n = sysread($s, my $buf, 65536);
        last if defined $n && $n == 0;
        $in .= $buf if $n;
    }
    my ($head, $body) = split /\r\n\r\n/, $in, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    return ($status // 0, sha256_digest($body // ''));
}

{
    my (@gets, @answers);

    for my $bytes (@committing) {
        my $d = sha256_digest($bytes);
        $fake->reset_requests;

        my %sock = map {
            $_ => IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                        PeerPort => $t->port, Proto => 'tcp')
                  || die "connect: $!"
        } qw(commit commit-other);
        my $asked = 0;
        my $r = stream_get($t, "/v2/cache/library/commit/blobs/$d", timeout => 30,
                           on_read => sub {
            return if $asked || $_[0] < length($bytes) - 1;
            $asked = 1;
            syswrite($sock{$_}, "GET /v2/cache/library/$_/blobs/$d HTTP/1.0\r\n"
                                . "Host: 127.0.0.1\r\n\r\n") for sort keys %sock;
        });
        ok($r->{complete} && $r->{sha256} eq $d, 'committing: the first client got the blob');
        ok($asked, '... all but its last byte first, when the others asked');
        push @answers, map { [ raw_answer($sock{$_}) ] } sort keys %sock;
        push @gets, fake_gets(qr/\Q$d\E/);
    }

    is_deeply(\@answers, [ map { my $d = sha256_digest($_); ([ 200, $d ]) x 2 } @committing ],
              'committing: the clients that came meanwhile got the blob, for its repository and another');
    is_deeply(\@gets, [ (1) x @committing ], 'committing: each blob was fetched once')
        or diag("upstream GETs of each: @gets");
}

$t->stop;
$fake->stop;
$cdn->stop;

done_testing;
