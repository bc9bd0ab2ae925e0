#!/usr/bin/perl

# When the upstream cannot confirm an expired tag (500, 429, a hang, a
# refused connection), the cached manifest is served (STALE), a warn line
# names the remote and the cause, and the remote is left alone for a
# growing back-off instead of being asked by every request. A check in
# flight is shared: in "updating" mode the other requests get the cached
# manifest at once (UPDATING), in "wait" mode they wait for its answer.
# A HEAD without Docker-Content-Digest falls back to a GET. An upstream 404
# for a cached tag keeps it served (as Pulp does); for what nobody cached
# it is remembered for pullthrough_negative_ttl, while failures never are.
# pullthrough_tag_max_stale bounds how old a served tag may be. Concurrent
# misses of one manifest cost one upstream GET. The fake upstream is here
# only to fail on demand.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools slurp);

need_tools(qw(openssl));

my $ACCEPT = $PT::Images::ACCEPT;

my $L = PT::Images::build('hello');
my $h10 = $L->{refs}{'hello-1.0'}{digest};
my $h11 = $L->{refs}{'hello-1.1'}{digest};

# flags: "mode" (how manifests are answered), "latest" (its digest)
my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$L->{dir}/blobs" ],
    tags => { 'library/hello:1.0' => $h10, 'library/hello:1.1' => $h11,
              'library/hello:cold' => $h10 },
    hook => sub {
        my ($req, $fake) = @_;
        return undef unless $req->{path} =~ m{/manifests/([^/]+)$};
        my $ref = $1;
        my $mode = $fake->flag('mode') // 'ok';

        return PT::FakeUpstream::error(500, 'UNKNOWN') if $mode eq '500';
        return [ 429, [ 'Retry-After' => '60' ], '' ] if $mode eq '429';
        return PT::FakeUpstream::error(404, 'MANIFEST_UNKNOWN') if $mode eq '404';
        return { stall => 1, release => 'go' } if $mode eq 'stall';
        sleep 0.5 if $mode eq 'slow' && ($ref eq 'latest' || $ref eq 'cold');

        if ($ref eq 'latest') {
            local $req->{path} = '/v2/library/hello/manifests/'
                                 . ($fake->flag('latest') // $h11);
            my $a = $fake->default_answer($req);
            if ($mode eq 'nodigest') {
                my %h = @{ $a->[1] };
                delete $h{'Docker-Content-Digest'};
                $a->[1] = [ %h ];
            }
            return $a;
        }
        return undef;
    },
)->start;

my $conf = 'pullthrough_tag_ttl 1s; pullthrough_tag_revalidate_timeout 1s; '
         . 'pullthrough_negative_ttl 1s;';
my $t = PT::Nginx->new(conf => cache_conf(workers => 2, registry => $conf));
$t->start;
my $pt = setup_cache($t, $fake->url, remote => { max_retries => 0 });
my $remote_href = $pt->{remote_obj}{pulp_href};

# a request for a manifest of library/hello: { status, digest, cache, json,
# seconds, ... }
sub manifest {
    my ($ref, %o) = @_;
    return logged_request($t, $o{method} // 'GET', "/v2/cache/library/hello/manifests/$ref",
                          headers => { Accept => $ACCEPT });
}

sub upstream {
    my @r = $fake->requests_matching(undef, qr{/manifests/});
    $fake->reset_requests;
    return [ map { "$_->{method} $_->{path}" } @r ];
}

sub mode { $fake->set_flag('mode', $_[0]) }
sub expire { sleep(1.1) }
sub warns { my $m = shift; my $l = slurp($t->error_log_file); substr($l, $m) }

my $HEAD = 'HEAD /v2/library/hello/manifests/latest';
my $GET = 'GET /v2/library/hello/manifests/latest';

my $r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $h11, 'MISS' ], 'latest cached (MISS)');
upstream();

# --- 500: stale, a warn line, one HEAD, then a back-off ---

mode('500');
expire();
my $mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $h11, 'STALE' ],
          'the upstream answers 500: the cached manifest (STALE)');
like(warns($mark), qr/\[warn\].*remote "pt-cache" could not revalidate "library\/hello:latest" \(it answered 500\): the cached manifest is served, the remote is left alone for 1000 ms/,
     '... a warn line names the remote, the tag, the cause and the back-off');
is_deeply(upstream(), [ $HEAD ], '... after one HEAD (no retries for a check)');

$r = manifest('latest') for 1 .. 3;
is_deeply([ $r->{digest}, $r->{cache} ], [ $h11, 'STALE' ], 'at once again: STALE');
is_deeply(upstream(), [], '... without asking the failing upstream (back-off)');

sleep 1.1;
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is($r->{cache}, 'STALE', 'after the back-off: asked again, still failing: STALE');
is_deeply(upstream(), [ $HEAD ], '... one HEAD');
like(warns($mark), qr/left alone for 2000 ms/, '... the back-off doubles');

mode('ok');
sleep 2.1;
$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $h11, 'REVALIDATED' ],
          'the upstream back: REVALIDATED');
is_deeply(upstream(), [ $HEAD ], '... one HEAD');

# --- 429 and a refused connection ---

mode('429');
expire();
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{cache} ], [ 200, 'STALE' ], '429: STALE');
like(warns($mark), qr/could not revalidate .* \(it answered 429\)/, '... named in the warn line');
mode('ok');
sleep 1.1;
manifest('latest');
upstream();

# --- a hang: stale after pullthrough_tag_revalidate_timeout, others at once ---

mode('stall');
expire();
my $owner = bg_stream_get($t, '/v2/cache/library/hello/manifests/latest?owner=1',
                          headers => { Accept => $ACCEPT }, keep => 1);
ok(wait_for(sub { $fake->requests_matching('HEAD', qr{/manifests/latest}) }, 10),
   'a hanging upstream: the check is under way');
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $h11, 'UPDATING' ],
          '... another request meanwhile: the cached manifest (UPDATING)');
ok($r->{seconds} < 0.5, sprintf('... at once (%.3f s)', $r->{seconds}));
my $o = bg_result($owner, 30);
is($o->{status}, 200, '... the checking request: 200');
ok($o->{seconds} >= 0.9 && $o->{seconds} < 3,
   sprintf('... after pullthrough_tag_revalidate_timeout (%.2f s)', $o->{seconds}));
my ($ol) = grep { $_->{uri} =~ /owner=1/ } cache_log($t);
is($ol->{cache}, 'STALE', '... STALE');
$fake->set_flag('go', 1);
mode('ok');
sleep 1.1;
manifest('latest');
upstream();

# --- a HEAD without Docker-Content-Digest: a GET compares ---

mode('nodigest');
expire();
$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $h11, 'REVALIDATED' ],
          'no Docker-Content-Digest on the HEAD, same manifest: REVALIDATED');
is_deeply(upstream(), [ $HEAD, $GET ], '... after a HEAD and a GET');

$fake->set_flag('latest', $h10);
expire();
$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $h10, 'EXPIRED' ],
          '... a moved tag: the new manifest (EXPIRED)');
is_deeply(upstream(), [ $HEAD, $GET ], '... after a HEAD and a GET');

# --- a 404 for a cached tag: still served, as Pulp does ---

mode('404');
expire();
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $h10, 'STALE' ],
          'the upstream says the tag is gone: the cached manifest');
like(warns($mark), qr/\[warn\].*remote "pt-cache" no longer has "library\/hello:latest": the cached manifest is served/,
     '... with a warn line');
$r = manifest('latest');
is($r->{cache}, 'HIT', '... and not asked again within the period');
is_deeply(upstream(), [ $HEAD ], '... one HEAD in all');

# --- the negative cache: a 404 for what nobody cached ---

$r = manifest('missing');
is_deeply([ $r->{status}, $r->{json}{errors}[0]{code} ], [ 404, 'MANIFEST_UNKNOWN' ],
          'an unknown tag: 404 MANIFEST_UNKNOWN');
$r = manifest('missing') for 1 .. 3;
is_deeply([ $r->{status}, $r->{cache} ], [ 404, 'HIT' ], 'asked again: 404 from the cache');
$r = manifest('missing', method => 'HEAD');
is($r->{status}, 404, '... HEAD too');
is_deeply(upstream(), [ 'GET /v2/library/hello/manifests/missing' ],
          '... one upstream request for all five');
sleep 1.1;
manifest('missing');
is_deeply(upstream(), [ 'GET /v2/library/hello/manifests/missing' ],
          'after pullthrough_negative_ttl: asked again');

my $nob = 'sha256:' . ('0' x 64);
for my $m ('GET', 'GET', 'HEAD') {
    my $x = $t->request($m, "/v2/cache/library/hello/blobs/$nob");
    is($x->{status}, 404, "an unknown blob, $m: 404");
}
is(scalar($fake->requests_matching(undef, qr{/blobs/})), 1,
   '... one upstream request for the three');
$fake->reset_requests;
sleep 1.1;
$t->get("/v2/cache/library/hello/blobs/$nob");
is(scalar($fake->requests_matching(undef, qr{/blobs/})), 1,
   '... asked again after pullthrough_negative_ttl');
$fake->reset_requests;

mode('500');
$r = manifest('broken') for 1 .. 2;
is($r->{status}, 502, 'an upstream 500 for an uncached tag: 502');
is_deeply(upstream(), [ ('GET /v2/library/hello/manifests/broken') x 2 ],
          '... never remembered as absent: asked each time');
mode('ok');
sleep 2.1;

# --- concurrent: updating serves the old, one HEAD and one GET ---

mode('slow');
manifest('latest');
upstream();
$fake->set_flag('latest', $h11);
expire();
my $res = parallel(10, sub {
    my $x = $t->request(GET => "/v2/cache/library/hello/manifests/latest?par=$_[0]",
                        headers => { Accept => $ACCEPT });
    return { status => $x->{status}, digest => $x->{headers}{'docker-content-digest'} };
});
is(scalar(grep { $_->{status} == 200 } @$res), 10, 'updating, 10 at once: all 200');
is(scalar(grep { $_->{digest} eq $h10 || $_->{digest} eq $h11 } @$res), 10,
   '... the old manifest or the new one');
is_deeply(upstream(), [ $HEAD, $GET ], '... one HEAD and one GET in all');
my @par;
wait_for(sub { @par = grep { $_->{uri} =~ /par=/ } cache_log($t); @par == 10 }, 10);
my %st;
$st{ $_->{cache} }++ for @par;
is($st{EXPIRED}, 1, '... one request made the check (EXPIRED)');
ok($st{UPDATING}, '... others were served meanwhile (UPDATING): '
   . join(', ', map { "$_ x$st{$_}" } sort keys %st));

# --- concurrent misses: one GET ---

$res = parallel(10, sub {
    my $x = $t->request(GET => "/v2/cache/library/hello/manifests/cold?par=$_[0]",
                        headers => { Accept => $ACCEPT });
    return { status => $x->{status}, digest => $x->{headers}{'docker-content-digest'} };
});
is(scalar(grep { $_->{status} == 200 && $_->{digest} eq $h10 } @$res), 10,
   '10 concurrent misses of one tag: all get it');
is_deeply(upstream(), [ 'GET /v2/library/hello/manifests/cold' ],
          '... from one upstream GET');

# --- wait: every request gets the new manifest ---

$t->set_conf(cache_conf(workers => 2, registry => "$conf pullthrough_tag_revalidate wait;"));
$t->reload;
$fake->set_flag('latest', $h10);
expire();
$res = parallel(10, sub {
    my $x = $t->request(GET => "/v2/cache/library/hello/manifests/latest?wait=$_[0]",
                        headers => { Accept => $ACCEPT });
    return { status => $x->{status}, digest => $x->{headers}{'docker-content-digest'} };
});
is(scalar(grep { $_->{status} == 200 && $_->{digest} eq $h10 } @$res), 10,
   'wait, 10 at once after the tag moved: every one gets the new manifest');
is_deeply(upstream(), [ $HEAD, $GET ], '... from one HEAD and one GET');

# --- background: the cached manifest at once, the check after it ---

$t->set_conf(cache_conf(workers => 2, registry => "$conf pullthrough_tag_revalidate background;"));
$t->reload;
mode('slow');
$fake->set_flag('latest', $h11);
expire();
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $h10, 'UPDATING' ],
          'background, the tag moved: the cached manifest first (UPDATING)');
ok($r->{seconds} < 0.45, sprintf('... before the check, which takes 0.5 s (%.3f s)', $r->{seconds}));
ok(wait_for(sub { $fake->requests_matching('GET', qr{/manifests/latest}) }, 10),
   '... the check found the move and fetched the new manifest');
wait_for(sub { manifest('latest')->{digest} eq $h11 }, 10);
$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $h11, 'HIT' ], '... which the next requests get');
is_deeply(upstream(), [ $HEAD, $GET ], '... one HEAD and one GET');

mode('500');
expire();
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $h11, 'UPDATING' ],
          'background, the upstream failing: the cached manifest');
ok(wait_for(sub { warns($mark) =~ /could not revalidate .* \(it answered 500\)/ }, 10),
   '... the failed check is logged');
$r = manifest('latest');
is($r->{cache}, 'STALE', '... then STALE during the back-off');
is_deeply(upstream(), [ $HEAD ], '... after one HEAD');
mode('ok');
sleep 1.1;

# --- a TLS failure, and a token realm that is down ---

$t->set_conf(cache_conf(workers => 2, registry => $conf));
$t->reload;
(my $tls_url = $fake->url) =~ s/^http:/https:/;
is($t->patch($remote_href, { url => $tls_url, tls_validation => JSON::PP::false })->{status}, 202,
   'the remote now speaks TLS to a plain HTTP port');
sleep 2.1;
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{cache} ], [ 200, 'STALE' ], 'a TLS failure: STALE');
like(warns($mark), qr/could not revalidate "library\/hello:latest" \((?:unreachable|timed out)\)/,
     '... logged');

my $dead = 'http://127.0.0.1:' . PT::Nginx::free_port();
my $bearer = PT::FakeUpstream->new(hook => sub {
    return [ 401, [ 'WWW-Authenticate' => qq(Bearer realm="$dead/token",service="x") ], '' ];
})->start;
is($t->patch($remote_href, { url => $bearer->url, tls_validation => JSON::PP::true })->{status}, 202,
   'the remote now answers 401 Bearer, its realm down');
sleep 2.1;
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{cache} ], [ 200, 'STALE' ], 'a token realm that is down: STALE');
like(warns($mark), qr/could not revalidate "library\/hello:latest"/, '... logged');
is($t->patch($remote_href, { url => $fake->url })->{status}, 202, 'the remote back');
ok(wait_for(sub { manifest('latest')->{cache} eq 'REVALIDATED' }, 20),
   '... REVALIDATED once its back-off is over');
upstream();

# --- pullthrough_tag_max_stale ---

$t->set_conf(cache_conf(workers => 2, registry => "$conf pullthrough_tag_max_stale 1s;"));
$t->reload;
mode('500');
sleep 2.2;
$mark = length slurp($t->error_log_file);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{json}{errors}[0]{code} ], [ 502, 'UNAVAILABLE' ],
          'older than the period plus pullthrough_tag_max_stale: 502, not served');
like(warns($mark), qr/last confirmed too long ago for pullthrough_tag_max_stale/,
     '... logged');
$r = manifest('latest');
is($r->{status}, 502, '... also during the back-off');
is_deeply(upstream(), [ $HEAD ], '... which only the first request asked');
$r = manifest($h10);
is_deeply([ $r->{status}, $r->{cache} ], [ 200, 'HIT' ], '... manifests by digest still served');

$t->stop;
$t->check_error_log;

done_testing;
