#!/usr/bin/perl

# Upstreams that are down (connection refused: 502 at once) or stall (no
# answer: 504 after proxy_read_timeout, 2 s here), for manifests and blobs,
# GET and HEAD; what is cached is still pulled, with no upstream contact;
# nothing is stored or left behind by a failure.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Digest::SHA ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-125-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $L = PT::Images::build('hello');
my $h10 = $L->{refs}{'hello-1.0'};
my $h11 = $L->{refs}{'hello-1.1'};
my %tags = ('library/hello:1.0' => $h10->{digest},
            'library/hello:1.1' => $h11->{digest});

# blobs of their own for the concurrency test, each paused upstream
my @cblobs;
{
    mkdir "$tmp/cblobs"; mkdir "$tmp/cblobs/sha256";
    for my $i (1 .. 4) {
        my $bytes = join '', map { chr(($i * 31 + $_ * 7) % 256) } 1 .. 4096;
        my $hex = Digest::SHA::sha256_hex($bytes);
        open my $fh, '>', "$tmp/cblobs/sha256/$hex" or die;
        binmode $fh;
        print $fh $bytes;
        close $fh;
        push @cblobs, "sha256:$hex";
    }
}

# answers normally, or (flag "stall") takes requests and never answers
my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$L->{dir}/blobs", "$tmp/cblobs" ], tags => \%tags,
    hook => sub {
        my ($req, $fake) = @_;

        # library/concy blobs: sent up to their 10th byte, then held
        if ($req->{method} eq 'GET'
            && $req->{path} =~ m{/library/concy/blobs/sha256:([0-9a-f]{64})$})
        {
            return [ 200, [ 'Content-Type' => 'application/octet-stream' ],
                     { file => "$tmp/cblobs/sha256/$1", pause_at => 10,
                       wait_flag => 'conc-go' } ];
        }

        return { stall => 1, release => 'unstall' }
            if defined $fake->flag('stall');

        # "fail": the next N requests get STATUS (503 or 429)
        my $n = $fake->flag('fail-count');
        if (defined $n && $n > 0) {
            $fake->set_flag('fail-count', $n - 1);
            my $status = $fake->flag('fail-status') || 503;
            return [ $status, $status == 429 ? [ 'Retry-After' => '1' ] : [],
                     '{"errors":[{"code":"UNAVAILABLE"}]}' ];
        }
        return;
    })->start;

# an upstream that will be stopped
my $mortal = PT::FakeUpstream->new(blob_dirs => [ "$L->{dir}/blobs" ],
                                   tags => \%tags)->start;

# nothing listens there
my $dead = 'http://127.0.0.1:' . PT::Nginx::free_port();

my $t = PT::Nginx->new(conf => cache_conf(registry => <<'EOF'));
proxy_connect_timeout 2s;
            proxy_read_timeout 2s;
            proxy_send_timeout 2s;
EOF
$t->start;

# single attempts (max_retries 0): how soon failures are answered
setup_cache($t, $fake->url, remote => { max_retries => 0 });
setup_cache($t, $mortal->url, base_path => 'mortal',
            remote => { max_retries => 0 });
setup_cache($t, $dead, base_path => 'down', remote => { max_retries => 0 });

# Pulp's default: 3 retries
setup_cache($t, $fake->url, base_path => 'retry');
setup_cache($t, $fake->url, base_path => 'retry1',
            remote => { max_retries => 1 });
setup_cache($t, $dead, base_path => 'downretry');

# download_concurrency: exchanges in progress at once, for all workers
setup_cache($t, $fake->url, base_path => 'conc',
            remote => { download_concurrency => 2 });

# rate_limit: upstream requests per second, for all workers
setup_cache($t, $fake->url, base_path => 'rl', remote => { rate_limit => 2 });

# the remote's headers go upstream, the client's never
setup_cache($t, $fake->url, base_path => 'hdrs',
            remote => { headers => [ { 'X-Pt-Remote' => 'from the remote' },
                                     { 'X-Other' => '2' } ] });

# total_timeout: the whole exchange, shorter than proxy_read_timeout here
setup_cache($t, $fake->url, base_path => 'quick',
            remote => { total_timeout => 0.5, max_retries => 0 });
setup_cache($t, $fake->url, base_path => 'quickretry',
            remote => { total_timeout => 0.8 });

# sock_read_timeout: no byte from the upstream for that long
setup_cache($t, $fake->url, base_path => 'readto',
            remote => { sock_read_timeout => 0.5, max_retries => 0 });

$PT::Pull::CMD_TIMEOUT = 30;

sub sha256_of { 'sha256:' . Digest::SHA::sha256_hex($_[0]) }

sub timed {
    my ($code) = @_;
    my $t0 = time;
    my $r = $code->();
    return ($r, time - $t0);
}

sub pull {
    my ($ref, $name) = @_;
    return skopeo('copy', '--quiet', '--src-tls-verify=false',
                  'docker://' . cache_ref($t, $ref, $name =~ s{/.*}{}r),
                  "dir:$tmp/" . ($name =~ s{\W}{_}gr));
}

sub repo_names {
    return [ sort map { $_->{name} }
             @{ list_all($t, "$API/repositories/container/container/") } ];
}


# an upstream that refuses connections: 502 at once, nothing stored

{
    my $base = '/v2/down/library/hello';
    my $mark = cache_log_mark($t);

    my ($r, $s) = timed(sub { http_get($t, "$base/manifests/1.0",
                                       headers => { Accept => $ACCEPT }) });
    is_oci_error($r, 502, 'UNAVAILABLE', 'down, manifest: 502 UNAVAILABLE');
    ok($s < 1.5, sprintf('down, manifest: answered in %.2f s', $s));

    ($r, $s) = timed(sub { http_get($t, "$base/manifests/1.0", method => 'HEAD') });
    is($r->{status}, 502, 'down, manifest HEAD: 502');
    ok($s < 1.5, sprintf('down, manifest HEAD: answered in %.2f s', $s));

    my $d = $h10->{layers}[1];
    ($r, $s) = timed(sub { http_get($t, "$base/blobs/$d") });
    is_oci_error($r, 502, 'UNAVAILABLE', 'down, blob: 502 UNAVAILABLE');
    ok($s < 1.5, sprintf('down, blob: answered in %.2f s', $s));

    ($r, $s) = timed(sub { http_get($t, "$base/blobs/$d", method => 'HEAD') });
    is($r->{status}, 502, 'down, blob HEAD: 502');
    ok($s < 1.5, sprintf('down, blob HEAD: answered in %.2f s', $s));

    ok(!-e blob_file($t, $d) && !-e blob_file($t, $h10->{digest}),
       'down: nothing stored');
    ok(wait_for(sub { !tmp_files($t) }), 'down: no temp file');
    is_oci_error(http_get($t, "$base/tags/list"), 404, 'NAME_UNKNOWN',
                 'down: no tag recorded');
    ok(!grep({ m{^down/} } @{ repo_names() }), 'down: no repository');

    wait_for(sub { cache_log($t, $mark) >= 4 });
    is_deeply([ map { $_->{cache} }
                grep { $_->{path} =~ m{^/v2/down/.*/(?:manifests|blobs)/} }
                cache_log($t, $mark) ], [ ('ERROR') x 4 ],
              'down: logged ERROR');
}


# cache hello:1.0 through both upstreams while they answer

for my $name ('cache', 'mortal') {
    my ($rc, $out) = pull('library/hello:1.0', "$name/warm");
    is($rc, 0, "$name: hello:1.0 pulled and cached") or diag($out);
}


# an upstream that stalls: uncached content 504 after proxy_read_timeout;
# cached content as if nothing happened

$fake->set_flag('stall');

{
    $fake->reset_requests;
    my ($rc, $out) = pull('library/hello:1.0', 'cache/stalled');
    is($rc, 0, 'stalled upstream: cached hello:1.0 still pulls') or diag($out);
    is(scalar(my @r = $fake->requests), 0, '... without asking the upstream');
    is(file_digest("$tmp/cache_stalled/manifest.json"), $h10->{digest},
       '... the right manifest');

    my $base = '/v2/cache/library/hello';
    my ($r, $s) = timed(sub { http_get($t, "$base/manifests/1.1",
                                       headers => { Accept => $ACCEPT }) });
    is_oci_error($r, 504, 'UNAVAILABLE', 'stalled, manifest: 504 UNAVAILABLE');
    ok($s > 1.5 && $s < 6, sprintf('stalled, manifest: after %.1f s', $s));

    ($r, $s) = timed(sub { http_get($t, "$base/manifests/1.1", method => 'HEAD') });
    is($r->{status}, 504, 'stalled, manifest HEAD: 504');
    ok($s > 1.5 && $s < 6, sprintf('stalled, manifest HEAD: after %.1f s', $s));

    my $d = $h11->{layers}[1];
    ($r, $s) = timed(sub { http_get($t, "$base/blobs/$d") });
    is_oci_error($r, 504, 'UNAVAILABLE', 'stalled, blob: 504 UNAVAILABLE');
    ok($s > 1.5 && $s < 6, sprintf('stalled, blob: after %.1f s', $s));

    ($r, $s) = timed(sub { http_get($t, "$base/blobs/$d", method => 'HEAD') });
    is($r->{status}, 504, 'stalled, blob HEAD: 504');

    ok(!-e blob_file($t, $d) && !-e blob_file($t, $h11->{digest}),
       'stalled: nothing stored');
    ok(wait_for(sub { !tmp_files($t) }), 'stalled: no temp file');
    is_deeply(http_get($t, "$base/tags/list")->{json}{tags}, ['1.0'],
              'stalled: no tag recorded');
    is(scalar(@r = $fake->requests), 4, 'stalled: each request went upstream once');

    # the upstream recovers
    $fake->clear_flag('stall');
    $fake->set_flag('unstall');
    ($rc, $out) = pull('library/hello:1.1', 'cache/recovered');
    is($rc, 0, 'recovered upstream: hello:1.1 pulls') or diag($out);
    is(file_digest("$tmp/cache_recovered/manifest.json"), $h11->{digest},
       '... the right manifest');
}


# an upstream that went away: cached content still pulls, the rest is a
# quick 502

$mortal->stop;

{
    my ($rc, $out) = pull('library/hello:1.0', 'mortal/after');
    is($rc, 0, 'upstream gone: cached hello:1.0 still pulls') or diag($out);
    is(file_digest("$tmp/mortal_after/manifest.json"), $h10->{digest},
       '... the right manifest');

    my $t0 = time;
    ($rc, $out) = pull('library/hello:1.1', 'mortal/uncached');
    isnt($rc, 0, 'upstream gone: uncached hello:1.1 fails');
    ok(time - $t0 < 10, sprintf('... in %.1f s', time - $t0));
    my ($r, $s) = timed(sub { http_get($t, '/v2/mortal/library/hello/manifests/1.1',
                                       headers => { Accept => $ACCEPT }) });
    is_oci_error($r, 502, 'UNAVAILABLE', 'upstream gone, manifest: 502 UNAVAILABLE');
    ok($s < 1.5, sprintf('upstream gone: answered in %.2f s', $s));
}

# retries, with backoff: 503s and 429s that pass, connection errors

{
    $fake->set_flag('fail-status', 503);
    $fake->set_flag('fail-count', 2);
    $fake->reset_requests;
    my $r = http_get($t, '/v2/retry/library/hello/manifests/1.1',
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'two 503s, then 200: the third try answers');
    is(scalar(my @u = $fake->requests_matching('GET', qr{/manifests/1\.1$})), 3,
       '... three upstream requests');

    $fake->set_flag('fail-count', 2);
    $fake->reset_requests;
    my $d = $h11->{layers}[0];
    $r = http_get($t, "/v2/retry/library/hello/blobs/$d");
    is($r->{status}, 200, 'blob: two 503s, then the blob');
    is(sha256_of($r->{content}), $d, '... the right bytes');

    $fake->set_flag('fail-count', 5);
    $fake->reset_requests;
    $r = http_get($t, '/v2/retry1/library/hello/manifests/1.0',
                  headers => { Accept => $ACCEPT });
    is_oci_error($r, 502, 'UNAVAILABLE', 'max_retries 1: still 503: 502');
    is(scalar(@u = $fake->requests_matching('GET', qr{/manifests/1\.0$})), 2,
       '... after two upstream requests');
    $fake->set_flag('fail-count', 0);

    $fake->set_flag('fail-status', 429);
    $fake->set_flag('fail-count', 1);
    # a blob this repository has not seen: the upstream is asked
    my ($x, $s) = timed(sub { http_get($t, '/v2/retry/library/hello/blobs/'
                                          . $h10->{layers}[1]) });
    is($x->{status}, 200, '429 with Retry-After: 1, then 200');
    ok($s >= 0.9, sprintf('... after waiting Retry-After (%.2f s)', $s));
    $fake->set_flag('fail-count', 0);

    ($x, $s) = timed(sub { http_get($t, '/v2/downretry/library/hello/manifests/1.0',
                                    headers => { Accept => $ACCEPT }) });
    is_oci_error($x, 502, 'UNAVAILABLE', 'refused 4 times: 502');
    ok($s >= 1.7 && $s < 6, sprintf('... after 3 backoffs (%.2f s)', $s));
    like($t->error_log, qr/try 3 of 3/, 'retries are logged');
}

# headers: added to manifest and blob requests; the client's are not passed

{
    $fake->reset_requests;
    my $r = http_get($t, '/v2/hdrs/library/hello/manifests/1.0',
                     headers => { Accept => $ACCEPT, 'X-Client-Secret' => 'mine',
                                  Authorization => 'Bearer client-token' });
    is($r->{status}, 200, 'remote headers: the manifest');
    # a blob the manifest does not name: the upstream is asked about it
    $r = http_get($t, "/v2/hdrs/library/hello/blobs/$h11->{layers}[1]",
                  headers => { 'X-Client-Secret' => 'mine' });
    is($r->{status}, 200, 'remote headers: a blob');

    my @up = $fake->requests_matching(undef, qr{^/v2/library/hello/});
    is(scalar @up, 2, 'remote headers: two upstream requests');
    is_deeply([ map { $_->{headers}{'x-pt-remote'} } @up ],
              [ 'from the remote', 'from the remote' ],
              'remote headers: sent with every upstream request');
    is_deeply([ map { $_->{headers}{'x-other'} } @up ], [ '2', '2' ],
              'remote headers: all of them');
    is_deeply([ grep { defined } map { ($_->{headers}{'x-client-secret'},
                                        $_->{headers}{authorization}) } @up ],
              [], "remote headers: the client's headers are not passed");
}


# rate_limit 2: six misses (upstream HEADs of unknown blobs) take about two
# seconds: two at once (a second's worth), then one every half second

{
    $fake->reset_requests;
    my @d = map { 'sha256:' . Digest::SHA::sha256_hex("rl-$_") } 1 .. 6;
    my ($x, $s) = timed(sub {
        my @st;
        for my $d (@d) {
            push @st, $t->request('HEAD', "/v2/rl/library/hello/blobs/$d")->{status};
        }
        return \@st;
    });
    is_deeply($x, [ (404) x 6 ], 'rate_limit: six misses answered');
    ok($s >= 1.4 && $s < 4, sprintf('rate_limit 2/s: six upstream requests took %.2f s', $s));
    is(scalar(my @u = $fake->requests_matching('HEAD', qr{/blobs/})), 6,
       'rate_limit: all six reached the upstream, none refused');

    ($x, $s) = timed(sub { $t->request('HEAD', "/v2/hdrs/library/hello/blobs/$d[0]") });
    ok($s < 0.4, sprintf('rate_limit: another remote does not wait (%.2f s)', $s));
}


# download_concurrency 2: four misses at once, two upstream, two waiting
# (not refused) until one of the first ends

{
    $fake->reset_requests;
    my @pids;
    for my $i (0 .. $#cblobs) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $r = $t->get("/v2/conc/library/concy/blobs/$cblobs[$i]");
            open my $fh, '>', "$tmp/conc-$i" or POSIX::_exit(1);
            print $fh $r->{status}, ' ', 'sha256:' . Digest::SHA::sha256_hex($r->{content});
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }

    my $seen = sub { scalar(my @x = $fake->requests_matching('GET', qr{/library/concy/blobs/})) };
    ok(wait_for(sub { $seen->() >= 2 }, 10), 'download_concurrency: two go upstream');
    # a short look for a third that must not come while two are held
    Time::HiRes::sleep(0.5);
    is($seen->(), 2, 'download_concurrency 2: no third while two run');

    $fake->set_flag('conc-go');
    waitpid($_, 0) for @pids;

    my @got = map { local (@ARGV, $/) = "$tmp/conc-$_"; <> // '' } 0 .. $#cblobs;
    is_deeply(\@got, [ map { "200 $_" } @cblobs ],
              'download_concurrency: all four served, none refused');
    is($seen->(), 4, 'download_concurrency: each went upstream once');
    $fake->clear_flag('conc-go');
}


# total_timeout bounds the exchange: a stall answers 504 at that time,
# retries included

{
    $fake->clear_flag('unstall');
    $fake->set_flag('stall');
    my ($x, $s) = timed(sub { http_get($t, '/v2/quick/library/hello/manifests/1.1',
                                       headers => { Accept => $ACCEPT }) });
    is_oci_error($x, 504, 'UNAVAILABLE', 'total_timeout 0.5 s: a stall is a 504');
    ok($s >= 0.4 && $s < 1.5, sprintf('... after %.2f s, not proxy_read_timeout', $s));

    ($x, $s) = timed(sub { http_get($t, '/v2/quick/library/hello/blobs/'
                                       . $h11->{layers}[1]) });
    is($x->{status}, 504, 'total_timeout: a stalled blob fill too');
    ok($s < 1.5, sprintf('... after %.2f s', $s));

    ($x, $s) = timed(sub { http_get($t, '/v2/quickretry/library/hello/manifests/1.1',
                                    headers => { Accept => $ACCEPT }) });
    is($x->{status}, 504, 'total_timeout with retries: 504');
    ok($s < 1.8, sprintf('... within total_timeout, retries included (%.2f s)', $s));
    like($t->error_log, qr/took longer than the remote's total_timeout/,
         'the error log says why');

    ($x, $s) = timed(sub { http_get($t, '/v2/readto/library/hello/manifests/1.1',
                                    headers => { Accept => $ACCEPT }) });
    is_oci_error($x, 504, 'UNAVAILABLE', 'sock_read_timeout 0.5 s: a stall is a 504');
    ok($s >= 0.4 && $s < 1.5, sprintf('... after %.2f s', $s));
    like($t->error_log, qr/no data within the remote's sock_read_timeout/,
         '... and the error log says why');
    $fake->set_flag('unstall');
    $fake->clear_flag('stall');
}

$t->stop;
$fake->stop;

done_testing;
