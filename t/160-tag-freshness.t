#!/usr/bin/perl

# Tags stay fresh: a cached tag is served from disk for its freshness period
# (the remote's tag_ttl, else pullthrough_tag_ttl) after the upstream last
# confirmed it; then one request asks the upstream with a HEAD. The same
# digest: REVALIDATED, no GET. A moved tag: the new manifest is fetched,
# verified and recorded, the repository gets a new version, and the client
# gets it (EXPIRED). Manifests by digest are never asked about again. Two
# hundred concurrent requests for an expired tag, in two workers, cost one
# HEAD. With the upstream stopped, every cached tag and digest still pulls
# (STALE); what was never cached fails quickly.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools missing_tools slurp spew run_output);

need_tools(qw(docker-registry skopeo openssl curl));

my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-160-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello multi));
my $d10 = $img->{'library/hello:1.0'}{digest};
my $d11 = $img->{'library/hello:1.1'}{digest};

my $t = PT::Nginx->new(conf => cache_conf(workers => 2,
                                          registry => 'pullthrough_tag_ttl 1h;'));
$t->start;
my $pt = setup_cache($t, $reg->url, remote => { tag_ttl => 2 });
my $remote = $pt->{remote_obj};

is($remote->{tag_ttl}, 2, 'a remote takes tag_ttl (seconds)');

my $N = 0;

# a request for a manifest of library/hello: { status, digest, cache, ... }
sub manifest {
    my ($ref, %o) = @_;
    my $name = $o{name} // 'library/hello';
    my $r = logged_request($t, $o{method} // 'GET', "/v2/cache/$name/manifests/$ref",
                           headers => { Accept => $ACCEPT });
    $r->{body} = $r->{content};
    return $r;
}

# the upstream's manifest requests since the last reset
sub upstream {
    my @r = grep { $_->{path} =~ m{/manifests/} } $reg->requests;
    $reg->reset_requests;
    return [ map { "$_->{method} $_->{path}" } @r ];
}

sub tag_expires { sleep($_[0] + 0.1) }

sub hello_repo {
    my ($r) = grep { $_->{name} eq 'cache/library/hello' }
              @{ list_all($t, "$API/repositories/container/container/") };
    return $r;
}

sub cached_tags {
    my $v = hello_repo()->{latest_version_href};
    return { map { $_->{name} => $_->{tagged_manifest} }
             @{ list_all($t, "$API/content/container/tags/?repository_version=$v") } };
}

# --- a tag within its period, then after it ---

my $r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $d11, 'MISS' ],
          'first pull of latest: 1.1 from the upstream (MISS)');
upstream();

$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $d11, 'HIT' ], 'again at once: HIT');
is_deeply(upstream(), [], '... no upstream request');

my $TAG_UNITS = "$API/content/container/tags/";
my ($unit11) = grep { $_->{name} eq 'latest' } @{ list_all($t, $TAG_UNITS) };

PT::Images::retag($reg, 'library/hello:1.0', 'library/hello:latest');
$reg->reset_requests;

$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $d11, 'HIT' ],
          'moved upstream, still within the period: the cached one (HIT)');
is_deeply(upstream(), [], '... no upstream request');

my $versions = hello_repo()->{latest_version_href};

tag_expires(2);
$r = manifest('latest');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $d10, 'EXPIRED' ],
          'after the period: the new manifest (EXPIRED)');
is(PT::Pull::sha256_digest($r->{body}), $d10, '... its bytes match its digest');
is_deeply(upstream(), [ 'HEAD /v2/library/hello/manifests/latest',
                        'GET /v2/library/hello/manifests/latest' ],
          '... asked with a HEAD, then fetched with a GET');
isnt(hello_repo()->{latest_version_href}, $versions,
     '... the repository has a new version');
like(cached_tags()->{latest} // '', qr/\Q$d10\E|\/manifests\//,
     '... whose tag latest is the new manifest');

$r = $t->get('/v2/cache/library/hello/tags/list');
is_deeply($r->{json}{tags}, ['latest'], 'tags/list: latest');

# a moved tag is another content unit, as in Pulp: the old one is gone
my @units = grep { $_->{name} eq 'latest' } @{ list_all($t, $TAG_UNITS) };
is(scalar @units, 1, 'one tag unit for latest');
isnt($units[0]{pulp_href}, $unit11->{pulp_href}, '... with a new href');
is($t->get($units[0]{tagged_manifest})->{json}{digest}, $d10, '... naming the new manifest');
is($t->get($unit11->{pulp_href})->{status}, 404, '... the old unit\'s href: 404');

$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $d10, 'HIT' ], 'then fresh again: HIT');
is_deeply(upstream(), [], '... no upstream request');

$versions = hello_repo()->{latest_version_href};
tag_expires(2);
$r = manifest('latest');
is_deeply([ $r->{digest}, $r->{cache} ], [ $d10, 'REVALIDATED' ],
          'expired, unchanged upstream: REVALIDATED');
is_deeply(upstream(), [ 'HEAD /v2/library/hello/manifests/latest' ],
          '... one HEAD, no GET');
is(hello_repo()->{latest_version_href}, $versions, '... no new version');

$r = manifest('latest', method => 'HEAD');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $d10, 'HIT' ],
          'HEAD within the period: HIT');

# --- by digest: immutable ---

$r = manifest($d10);
is($r->{cache}, 'HIT', 'by digest: HIT');
tag_expires(2);
$r = manifest($d10);
is_deeply([ $r->{digest}, $r->{cache} ], [ $d10, 'HIT' ],
          'by digest, long after: HIT');
is_deeply(upstream(), [], '... never asked about again');

$r = manifest('latest', method => 'HEAD');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $d10, 'REVALIDATED' ],
          'a HEAD of an expired tag revalidates it too');
is_deeply(upstream(), [ 'HEAD /v2/library/hello/manifests/latest' ], '... with one HEAD');

# --- tag_ttl 0: every request asks; null: the directive's period ---

is($t->patch($remote->{pulp_href}, { tag_ttl => 0 })->{status}, 202, 'tag_ttl 0');
manifest('latest') for 1 .. 3;
is_deeply(upstream(), [ ('HEAD /v2/library/hello/manifests/latest') x 3 ],
          '... every request asks the upstream (as Pulp does)');

is($t->patch($remote->{pulp_href}, { tag_ttl => undef })->{status}, 202, 'tag_ttl null');
is($t->get($remote->{pulp_href})->{json}{tag_ttl}, undef, '... reads back as null');
tag_expires(0);
$r = manifest('latest');
is($r->{cache}, 'HIT', '... pullthrough_tag_ttl 1h applies: HIT');
is_deeply(upstream(), [], '... no upstream request');

is_field_errors($t->patch($remote->{pulp_href}, { tag_ttl => -1 }),
                { tag_ttl => 'Ensure this value is greater than or equal to 0.0.' },
                'tag_ttl -1 is refused');
is_field_errors($t->patch($remote->{pulp_href}, { tag_ttl => 'soon' }),
                { tag_ttl => 'A valid number is required.' }, 'tag_ttl "soon" is refused');

# --- 200 concurrent requests for an expired tag, two workers: one HEAD ---

is($t->patch($remote->{pulp_href}, { tag_ttl => 3 })->{status}, 202, 'tag_ttl 3');
tag_expires(0);
upstream();
tag_expires(3);

my $cfg = "$tmp/curl.cfg";
spew($cfg, join '', map {
    "url = \"" . $t->base_url . "/v2/cache/library/hello/manifests/latest?burst=$_\"\n"
    . "output = \"/dev/null\"\n"
} 1 .. 200);
# all 200 connections opened at once (without --parallel-immediate, curl
# waits for the first answer before it opens the others)
my $out = run_output('curl', '-s', '--no-progress-meter', '-Z', '--parallel-immediate',
                     '--parallel-max', '200', '-H', "Accept: $ACCEPT",
                     '-w', '%{http_code} %header{docker-content-digest}\n', '-K', $cfg);
my @answers = split /\n/, $out;
is(scalar(grep { $_ eq "200 $d10" } @answers), 200,
   '200 concurrent requests for the expired tag: 200 answers of its manifest')
    or diag(join "\n", grep { $_ ne "200 $d10" } @answers);
is_deeply(upstream(), [ 'HEAD /v2/library/hello/manifests/latest' ],
          '... and exactly one upstream HEAD');
my @burst;
wait_for(sub { @burst = grep { $_->{uri} =~ /burst=/ } cache_log($t); @burst == 200 }, 10);
my %st;
$st{ $_->{cache} }++ for @burst;
is($st{REVALIDATED}, 1, '... one of them REVALIDATED');
is(($st{HIT} // 0) + ($st{UPDATING} // 0), 199,
   '... the others HIT, or UPDATING while the check ran ('
   . join(', ', map { "$_ x$st{$_}" } sort keys %st) . ')');
is(scalar(keys %{{ map { $_->{pid} => 1 } @burst }}), 2, '... served by both workers');

# --- the upstream stopped: everything cached pulls, the rest fails fast ---

my %pulled;
for my $ref ('library/hello:1.0', 'library/hello:1.1', 'library/multi:1.0') {
    my ($rc, $o) = skopeo({ timeout => 60 }, 'copy', '--quiet', '--all',
                          '--src-tls-verify=false',
                          'docker://' . cache_ref($t, $ref), "dir:$tmp/" . ++$N);
    is($rc, 0, "pull $ref through the cache") or diag($o);
}
my $d_multi = $img->{'library/multi:1.0'}{digest};

$reg->stop;
tag_expires(3);

for my $ref ('library/hello:1.0', 'library/hello:1.1', 'library/hello:latest',
             "library/hello\@$d11", 'library/multi:1.0', "library/multi\@$d_multi") {
    my ($rc, $o) = skopeo({ timeout => 60 }, 'copy', '--quiet', '--all',
                          '--src-tls-verify=false',
                          'docker://' . cache_ref($t, $ref), "dir:$tmp/" . ++$N);
    is($rc, 0, "upstream stopped: $ref pulls from the cache") or diag($o);
}

my $log = slurp($t->error_log_file);
like($log, qr/\[warn\].*remote "pt-cache" could not revalidate "library\/hello:1\.0" \(unreachable\): the cached manifest is served/,
     'a warn line names the remote, the tag and the cause');

$r = manifest('1.0');
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $d10, 'STALE' ],
          'an expired tag with the upstream down: STALE');

my $t0 = time;
$r = manifest('never-cached');
my $took = time - $t0;
is($r->{status}, 502, 'an uncached tag with the upstream down: 502');
ok($took < 5, sprintf('... quickly (%.2f s: the retries of the remote, no more)', $took));

SKIP: {
    my $no_podman = missing_tools('podman');
    skip $no_podman, 1 if $no_podman;
    my ($rc, $o) = podman("$tmp/podman", 'pull', '--quiet', '--tls-verify=false',
                          cache_ref($t, 'library/hello:1.1'));
    is($rc, 0, 'upstream stopped: podman pulls library/hello:1.1 from the cache')
        or diag($o);
}

$t->stop;
$t->check_error_log;

done_testing;
