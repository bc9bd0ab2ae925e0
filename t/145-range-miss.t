#!/usr/bin/perl

# Range requests on a blob that is not cached yet. The client that starts
# the fill, one that joins it in the same worker and one of another worker
# get 206 with Content-Range and exactly the bytes asked for (S-E, S-, -N),
# sent from the growing temp file as soon as those bytes are written: a
# range early in the blob does not wait for the rest. A range that starts
# past the end gets 416 in the OCI error shape, and the fill goes on.
# Several ranges, a header that cannot be read, an If-Range that is not the
# blob's ETag, or an upstream without Content-Length: the whole blob, 200.
# The fill always fetches and stores the whole blob, verified: the next GET
# is a HIT. A range that ends with the blob waits for the verdict, and a
# reader whose fill fails is cut.
#
# A real registry for the plain cases, each on a cold cache; a fake upstream
# that stops at 2 MiB until the test lets it go on, so that "mid-fill" is a
# state, not a race (as in t/140), for joins, wrong bytes and a body
# without Content-Length.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $MiB = 1024 * 1024;

my $reg = PT::Registry->new->start;
PT::Images::seed($reg, 'hello');

# hello 1.0's big layer (3 MiB), exactly as the registry serves it
my $hello = PT::Images::build('hello');
my $d = $hello->{layers}{'hello-b'}{digest};
my $size = $hello->{layers}{'hello-b'}{size};
my $content = do {
    my $f = "$hello->{dir}/blobs/sha256/" . substr($d, 7);
    open my $fh, '<:raw', $f or die "$f: $!";
    local $/;
    scalar <$fh>;
};
ok($size > 3 * $MiB && length $content == $size, 'the blob: 3 MiB');

my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$hello->{dir}/blobs" ],
    hook => sub {
        my ($req, $fake) = @_;
        my ($repo, $ref) = $req->{path} =~ m{^/v2/(.+)/blobs/([^/]+)$} or return;
        my @h = ('Content-Type' => 'application/octet-stream',
                 'Docker-Content-Digest' => $ref);
        if ($repo eq 'library/chunked') {
            # no Content-Length: the body ends when the connection closes
            my $f = $fake->blob_file($ref) or return;
            return [ 200, \@h, sub {
                open my $fh, '<:raw', $f or return;
                local $/;
                PT::FakeUpstream::_write($_[0], scalar <$fh>);
            } ];
        }
        return unless $repo =~ m{^library/(gate|bad)-(\w+)$};
        return [ 200, \@h, { file => $fake->blob_file($ref),
                             pause_at => 2 * $MiB, wait_flag => "go-$2",
                             corrupt => ($1 eq 'bad' ? 1 : 0) } ];
    })->start;

sub cold_cache {
    my ($url, %o) = @_;
    my $more = delete $o{registry} // '';
    my $t = PT::Nginx->new(conf => cache_conf(%o, registry => "proxy_read_timeout 60s; $more"));
    $t->start;
    setup_cache($t, $url);
    return $t;
}

sub explain_get {
    my ($r) = @_;
    return "status $r->{status}, $r->{length} bytes (Content-Length "
        . ($r->{expected} // 'none') . '), '
        . ($r->{headers}{'content-range'} // 'no Content-Range')
        . ($r->{eof} ? ', closed' : '') . ($r->{error} ? ", $r->{error}" : '');
}

# one test: a 206 of $content's bytes [$first, $last]
sub is_part {
    my ($r, $first, $last, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $n = $last - $first + 1;
    ok($r->{status} == 206 && $r->{complete}
       && ($r->{headers}{'content-range'} // '') eq "bytes $first-$last/$size"
       && ($r->{expected} // -1) == $n
       && ($r->{headers}{'docker-content-digest'} // '') eq $d
       && $r->{content} eq substr($content, $first, $n),
       "$what: 206, bytes $first-$last/$size, exactly those bytes of the blob")
        or diag(explain_get($r));
}

sub no_temp_files {
    my ($t, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(wait_for(sub { !tmp_files($t) }, 10), "$what: no temp file left")
        or diag(join ' ', tmp_files($t));
}

# the fill went on to the end: the whole blob stored and verified, and the
# next GET is a HIT with nothing upstream
sub stored_whole {
    my ($t, $path, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(wait_for(sub { -f blob_file($t, $d) }, 20), "$what: the blob is stored");
    is(-f blob_file($t, $d) ? file_digest(blob_file($t, $d)) : '', $d,
       "$what: whole and verified");
    $reg->reset_requests;
    $fake->reset_requests;
    my $mark = cache_log_mark($t);
    my $r = stream_get($t, $path, idle_timeout => 10);
    ok($r->{status} == 200 && $r->{complete} && $r->{sha256} eq $d,
       "$what: a later GET gets the whole blob") or diag(explain_get($r));
    my $l = wait_cache_log($t, $mark, 'GET', qr{/blobs/});
    is($l && $l->{cache}, 'HIT', "$what: ... a HIT");
    is(scalar(my @u = ($reg->requests, $fake->requests)), 0,
       "$what: ... nothing upstream");
}


# a cold blob, one range: the client starting the fill gets 206 and
# exactly its bytes; upstream, the fill fetches the whole blob once

for my $case ([ 'a range in the middle', 'bytes=1000000-1999999', 1000000, 1999999 ],
              [ 'an open-ended range', 'bytes=1000000-', 1000000, $size - 1 ],
              [ 'a suffix range', 'bytes=-500', $size - 500, $size - 1 ],
              [ 'a range past the end, cut to it', "bytes=3000000-99999999",
                3000000, $size - 1 ],
              [ 'If-Range with the blob\'s ETag', 'bytes=0-99', 0, 99,
                'If-Range' => qq("$d") ])
{
    my ($what, $range, $first, $last, @more) = @$case;
    my $t = cold_cache($reg->url);
    my $path = "/v2/cache/library/hello/blobs/$d";
    $reg->reset_requests;
    my $mark = cache_log_mark($t);

    my $r = stream_get($t, $path, headers => { Range => $range, @more },
                       keep => 1, idle_timeout => 10);
    is_part($r, $first, $last, "$what of a cold blob ($range)");
    my $l = wait_cache_log($t, $mark, 'GET', qr{/blobs/});
    is($l && "$l->{status} $l->{cache}", '206 MISS', "$what: logged 206 MISS");
    my @up = $reg->requests_matching('GET', qr{/blobs/});
    is_deeply([ map { "$_->{method} $_->{path} $_->{status} $_->{bytes}" } @up ],
              [ "GET /v2/library/hello/blobs/$d 200 $size" ],
              "$what: upstream, one GET of the whole blob");
    stored_whole($t, $path, "$what, then");
    $t->stop;
}


# a range that starts past the end: 416 with the length, in the OCI error
# shape; the fill the request started goes on and stores the blob

for my $range ("bytes=$size-", 'bytes=-0') {
    my $t = cold_cache($reg->url);
    my $path = "/v2/cache/library/hello/blobs/$d";
    my $mark = cache_log_mark($t);

    my $r = http_get($t, $path, headers => { Range => $range });
    is_oci_error($r, 416, 'RANGE_INVALID', "$range on a cold blob: 416 RANGE_INVALID");
    is($r->{headers}{'content-range'}, "bytes */$size", "$range: Content-Range */$size");
    ok(!exists $r->{headers}{'docker-content-digest'} && !exists $r->{headers}{etag},
       "$range: an error, with no digest nor ETag");
    my $l = wait_cache_log($t, $mark, 'GET', qr{/blobs/});
    is($l && "$l->{status} $l->{cache}", '416 MISS', "$range: logged 416 MISS");
    stored_whole($t, $path, "$range, then");
    $t->stop;
}


# what a miss does not serve as a range: the whole blob, 200

for my $case ([ 'two ranges', { Range => 'bytes=0-0,10-19' } ],
              [ 'a Range that cannot be read', { Range => 'bytes=abc' } ],
              [ 'a range with its end before its start', { Range => 'bytes=100-10' } ],
              [ 'another unit', { Range => 'items=0-9' } ],
              [ 'If-Range with another ETag', { Range => 'bytes=0-99',
                                               'If-Range' => '"sha256:nope"' } ])
{
    my ($what, $headers) = @$case;
    my $t = cold_cache($reg->url);
    my $path = "/v2/cache/library/hello/blobs/$d";

    my $r = stream_get($t, $path, headers => $headers, idle_timeout => 10);
    ok($r->{status} == 200 && $r->{complete} && $r->{expected} == $size
       && $r->{sha256} eq $d && !exists $r->{headers}{'content-range'},
       "$what on a cold blob: ignored, the whole blob with 200")
        or diag(explain_get($r));
    $t->stop;
}


# a range early in the blob does not wait for the rest: the upstream stops
# at 2 MiB, and the range below it is answered whole meanwhile, to the
# client whose request started the fill

{
    my $t = cold_cache($fake->url);
    my $path = "/v2/cache/library/gate-early/blobs/$d";
    $fake->reset_requests;

    my $r = stream_get($t, $path, headers => { Range => 'bytes=1048576-2097151' },
                       keep => 1, idle_timeout => 10);
    is_part($r, 1048576, 2097151, 'the upstream stopped at 2 MiB, a range below it');
    ok(scalar(tmp_files($t)) && !-e blob_file($t, $d),
       '... answered mid-fill: nothing stored yet');
    my ($up) = $fake->requests_matching('GET', qr{/blobs/});
    ok($up && !exists $up->{headers}{range}, '... no Range sent upstream');

    $fake->set_flag('go-early');
    stored_whole($t, $path, 'the fill of the early range');
    $t->stop;
}


# ranges of clients joining a fill in progress, in the same worker: the
# part written is theirs at once; a range ending with the blob comes once
# the rest is written and verified

{
    my $t = cold_cache($fake->url);
    my $path = "/v2/cache/library/gate-join/blobs/$d";
    my $dir = tempdir('pt-145-join-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $fake->reset_requests;
    my $mark = cache_log_mark($t);

    my $a = bg_stream_get($t, $path, started => "$dir/a", idle_timeout => 30);
    ok(wait_for(sub { -e "$dir/a" }, 20), 'join: a first client has bytes of the fill');
    my $c = bg_stream_get($t, $path, headers => { Range => 'bytes=-100' },
                          keep => 1, idle_timeout => 30);

    my $r = stream_get($t, $path, headers => { Range => 'bytes=100-199' },
                       keep => 1, idle_timeout => 10);
    is_part($r, 100, 199, 'join: a range of what is written, while the upstream waits');
    my $l = wait_cache_log($t, $mark, 'GET', qr{/blobs/});
    is($l && "$l->{status} $l->{cache}", '206 JOIN', 'join: logged 206 JOIN');
    ok(!-e blob_file($t, $d), 'join: nothing stored yet');

    $fake->set_flag('go-join');
    is_part(bg_result($c, 30), $size - 100, $size - 1,
            'join: the last 100 bytes, once the fill is done');
    my $ra = bg_result($a, 30);
    ok($ra->{complete} && $ra->{sha256} eq $d, 'join: the first client got the whole blob');
    is(scalar(my @g = $fake->requests_matching('GET', qr{/blobs/})), 1,
       'join: one upstream request for the three');
    stored_whole($t, $path, 'join, then');
    $t->stop;
}


# a client of another worker follows the fill through the shared zone: its
# range of what is written comes at once too

{
    my $t = cold_cache($fake->url, workers => 2, listen => 'reuseport',
                       registry => 'add_header X-Pid $pid always;');
    my $path = "/v2/cache/library/gate-two/blobs/$d";
    my $dir = tempdir('pt-145-two-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

    my $a = bg_stream_get($t, $path, started => "$dir/a", idle_timeout => 30);
    ok(wait_for(sub { -e "$dir/a" }, 20), 'two workers: a first client has bytes');
    my ($owner) = map { /^(\d+)\./ ? $1 : () } tmp_files($t);
    ok($owner, "two workers: worker $owner fills");

    # clients until one reaches the other worker (reuseport spreads them)
    my $other;
    for (1 .. 40) {
        my $r = stream_get($t, $path, headers => { Range => 'bytes=2000-2999' },
                           keep => 1, idle_timeout => 5, timeout => 10);
        if (($r->{headers}{'x-pid'} // $owner) ne $owner) { $other = $r; last }
    }
    ok($other, 'two workers: a client of the other worker');
    is_part($other // { status => 0, headers => {}, content => '' }, 2000, 2999,
            'two workers: its range, from the other worker\'s fill');

    $fake->set_flag('go-two');
    my $ra = bg_result($a, 30);
    ok($ra->{complete} && $ra->{sha256} eq $d, 'two workers: the first client got the blob');
    is(scalar(my @g = $fake->requests_matching('GET', qr{/gate-two/blobs/})), 1,
       'two workers: one upstream request');
    ok(wait_for(sub { -f blob_file($t, $d) }, 20), 'two workers: stored');
    $t->stop;
}


# a blob that does not match its digest: a range that ends before the last
# byte was sent before the verdict (a part is never a whole blob); a range
# that ends with the blob never gets its last byte, its connection is cut;
# nothing is stored

{
    my $t = cold_cache($fake->url);
    my $path = "/v2/cache/library/bad-range/blobs/$d";
    my $dir = tempdir('pt-145-bad-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $elog = length $t->error_log;

    my $r = stream_get($t, $path, headers => { Range => 'bytes=0-99' },
                       keep => 1, idle_timeout => 10);
    is_part($r, 0, 99, 'wrong bytes: a range before the end, sent before the verdict');
    my $b = bg_stream_get($t, $path, headers => { Range => 'bytes=1000-' },
                          started => "$dir/b", idle_timeout => 30);
    ok(wait_for(sub { -e "$dir/b" }, 20), 'wrong bytes: a range to the end has its first bytes');

    $fake->set_flag('go-range');
    my $rb = bg_result($b, 30);
    is($rb->{status}, 206, 'wrong bytes: the range to the end had begun (206)');
    ok(!$rb->{complete} && $rb->{length} < $size - 1000 && $rb->{eof},
       'wrong bytes: ... and is cut before its last byte') or diag(explain_get($rb));
    like(substr($t->error_log, $elog), qr/does not match its digest/,
         'wrong bytes: error.log says why');
    ok(!-e blob_file($t, $d), 'wrong bytes: nothing stored');
    no_temp_files($t, 'wrong bytes');
    $t->stop;
}


# an upstream without Content-Length: the length is not known when the
# answer begins, so a Range gets the whole blob with 200

{
    my $t = cold_cache($fake->url);
    my $r = http_get($t, "/v2/cache/library/chunked/blobs/$d",
                     headers => { Range => 'bytes=0-99' });
    is($r->{status}, 200, 'no Content-Length upstream: a Range gets 200');
    ok(length $r->{content} == $size && sha256_digest($r->{content}) eq $d
       && !exists $r->{headers}{'content-range'},
       'no Content-Length upstream: ... and the whole blob');
    $t->stop;
}

$fake->stop;
$reg->stop;

done_testing;
