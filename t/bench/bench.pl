#!/usr/bin/perl

# make bench: the cache against its two references, measured side by side
# in one run on this machine.
#
#   1. hit blob throughput and small-blob requests/s through the module,
#      against stock nginx serving the very same files with sendfile
#      (target: ratio >= 0.9);
#   2. the wall time of a cold pull of a 100 MiB image through the cache,
#      against the same pull straight from the upstream registry
#      (target: ratio <= 1.2), through nginx's proxy module and through
#      libcurl (the transport of remotes with a proxy, a CA or a client
#      certificate: here a remote with a ca_cert);
#   3. requests/s of hits of a manifest by tag within its freshness period,
#      against stock nginx serving the manifest's file (target: ratio >= 0.9);
#   4. the upstream requests caused by 200 concurrent requests for an expired
#      tag, with pullthrough_tag_revalidate updating and wait (target: 1);
#   5. the time to the first byte of the answers for an expired tag while the
#      upstream hangs (a PT::FakeUpstream that never answers the HEAD): the
#      request that makes the check (STALE, bounded by
#      pullthrough_tag_revalidate_timeout), another one meanwhile (UPDATING)
#      and the first one in background mode (UPDATING), next to a fresh hit.
#
# Load comes from wrk on loopback; each figure is the best of a few short
# runs so that one noisy second does not decide it.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';

use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

use Test::More;     # PT::Nginx reports through it; bench prints its own

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Certs;
use PT::FakeUpstream;
use PT::Pull qw(cache_conf cache_log wait_for);
use PT::Util qw(open_cmd run_output spew);

my $DURATION = $ENV{BENCH_SECONDS} || 4;
my $ROUNDS = $ENV{BENCH_ROUNDS} || 3;
my $ACCEPT = $PT::Images::ACCEPT;
my $CHECK_TIMEOUT = 2;     # s: pullthrough_tag_revalidate_timeout in 5.

-x '/usr/bin/wrk' or die "wrk is not installed (make bench installs it)\n";

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello big));

my $t = PT::Nginx->new(conf => <<'EOF');
worker_processes 1;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    open_file_cache max=1000 inactive=60s;
    pullthrough_store %%STORE%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ { pullthrough_registry; pullthrough_tag_ttl 1h; }
        location /pulp/api/v3/ { pullthrough_admin; }
    }

    # the reference: stock nginx, the same files, the same settings
    server {
        listen 127.0.0.1:%%PORT2%%;
        location /blobs/ { root %%STORE%%; }
    }
}
EOF
$t->start;

my $remote = PT::Pulp::create_remote($t, name => 'bench', url => $reg->url);
PT::Pulp::create_dist($t, name => 'bench', base_path => 'bench',
                      remote => $remote->{pulp_href});

# the libcurl transport: another nginx with a store of its own (blob files
# are shared by repositories: one store would make its pull all hits)
my $tc = PT::Nginx->new(conf => <<'EOF');
worker_processes 1;
events { worker_connections 1024; }
http {
    sendfile on;
    access_log off;
    pullthrough_store %%STORE%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ { pullthrough_registry; }
        location /pulp/api/v3/ { pullthrough_admin; }
    }
}
EOF
$tc->start;

my $ca = PT::Certs->new;
my $cremote = PT::Pulp::create_remote($tc, name => 'bench-curl',
                                      url => $reg->url,
                                      ca_cert => $ca->ca_text);
PT::Pulp::create_dist($tc, name => 'bench', base_path => 'bench',
                      remote => $cremote->{pulp_href});

my $big = $img->{'library/big:1.0'};
my $hello = $img->{'library/hello:1.0'};

# 2. cold pulls: straight from upstream, then through the (empty) cache

my $work = tempdir('pt-bench-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $direct = pull("docker://" . $reg->host . "/library/big:1.0",
                  "$work/direct");
my $cold = pull("docker://127.0.0.1:" . $t->port . "/bench/library/big:1.0",
                "$work/cold");
my $cold_curl = pull("docker://127.0.0.1:" . $tc->port
                     . "/bench/library/big:1.0", "$work/cold-curl");
$tc->stop;
my $warm = pull("docker://127.0.0.1:" . $t->port . "/bench/library/big:1.0",
                "$work/warm");

# make sure the small image is cached too
pull("docker://127.0.0.1:" . $t->port . "/bench/library/hello:1.0",
     "$work/hello");

# 1. and 3. hits against stock nginx

my ($large) = sort { $b->{size} <=> $a->{size} } layers($big);
my ($small) = sort { $a->{size} <=> $b->{size} } layers($hello);
my $manifest = { digest => $hello->{digest},
                 path => "/v2/bench/library/hello/manifests/1.0" };
$manifest->{size} = -s store_file($t, $manifest->{digest})
    or die "the manifest of library/hello:1.0 is not in the store\n";
$manifest->{size_h} = human($manifest->{size});

my %rate;

for my $case ([ large => $large, '-t1', '-c2' ],
              [ small => $small, '-t1', '-c16' ],
              [ manifest => $manifest, '-t1', '-c16', '-H', "Accept: $ACCEPT" ])
{
    my ($name, $blob, @opts) = @$case;
    my ($alg, $hex) = split /:/, $blob->{digest};

    my $module = "http://127.0.0.1:" . $t->port
                 . ($blob->{path}
                    // "/v2/bench/library/" . ($name eq 'large' ? 'big' : 'hello')
                       . "/blobs/$blob->{digest}");
    my $stock = "http://127.0.0.1:" . $t->port(2)
                . "/blobs/$alg/" . substr($hex, 0, 2) . "/$hex";

    # rounds alternate between the two, so that a noisy moment of the
    # machine does not fall on one side only
    for (1 .. $ROUNDS) {
        for my $which ([ module => $module ], [ stock => $stock ]) {
            my ($label, $url) = @$which;
            my $r = wrk($url, @opts);
            my $best = $rate{$name}{$label};
            $rate{$name}{$label} = $r if !$best || $r->{rps} > $best->{rps};
        }
    }
}

$t->stop;

# 4. and 5. expired tags: another nginx, two workers (a check is shared by
# every worker), a cache.log with $pullthrough_cache_status; a remote on
# the registry, another on a fake upstream whose HEADs of manifests take
# 0.5 s (flag mode=slow) or never end (mode=hang)

my $fl = PT::Images::build('hello');
my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$fl->{dir}/blobs" ],
    tags => { 'library/hello:1.0' => $fl->{refs}{'hello-1.0'}{digest} },
    hook => sub {
        my ($req, $fake) = @_;
        return undef unless $req->{method} eq 'HEAD'
                            && $req->{path} =~ m{/manifests/};
        my $mode = $fake->flag('mode') // '';
        return { stall => 1, release => 'go' } if $mode eq 'hang';
        sleep 0.5 if $mode eq 'slow';
        return undef;
    },
)->start;

my $tr = PT::Nginx->new(conf => revalidate_conf('updating'));
$tr->start;

my $rremote = PT::Pulp::create_remote($tr, name => 'bench-fresh',
                                      url => $reg->url);
PT::Pulp::create_dist($tr, name => 'bench-fresh', base_path => 'fresh',
                      remote => $rremote->{pulp_href});
PT::Pulp::create_dist($tr, name => 'bench-fake', base_path => 'fake',
                      remote => PT::Pulp::create_remote($tr,
                          name => 'bench-fake', url => $fake->url,
                          tag_ttl => 1, max_retries => 0)->{pulp_href});

my $fresh = "/v2/fresh/library/hello/manifests/1.0";
my $fpath = "/v2/fake/library/hello/manifests/1.0";

for my $path ($fresh, $fpath) {                 # MISS: cached
    $tr->get($path, headers => { Accept => $ACCEPT })->{status} == 200
        or die "GET $path through the cache failed\n";
}
$tr->patch($rremote->{pulp_href}, { tag_ttl => 1 })->{status} == 202
    or die "PATCH tag_ttl of the remote failed\n";

# 4. 200 concurrent requests for an expired tag: upstream manifest requests

my %burst;

$fake->set_flag('mode', 'slow');

for my $mode (qw(updating wait)) {
    if ($mode ne 'updating') {
        $tr->set_conf(revalidate_conf($mode));
        $tr->reload;
    }
    sleep 1.2;                      # the tags expire

    $reg->reset_requests;
    $burst{$mode}{registry} = burst($tr, $fresh, 200, "$mode-registry");
    $burst{$mode}{registry}{upstream} =
        scalar $reg->requests_matching(undef, qr{/manifests/});

    $fake->reset_requests;
    $burst{$mode}{slow} = burst($tr, $fpath, 200, "$mode-slow");
    $burst{$mode}{slow}{upstream} =
        scalar $fake->requests_matching(undef, qr{/manifests/});
}

# 5. time to first byte of stale answers, the upstream hanging

my %ttfb;

my $fdigest = "/v2/fake/library/hello/manifests/"
              . $fl->{refs}{'hello-1.0'}{digest};

$tr->set_conf(revalidate_conf('updating'));
$tr->reload;
warm_workers($tr, $fdigest);
$fake->clear_flag('mode');
sleep 1.2;                          # the tag expires, the next request
ttfb($tr, $fpath);                  # confirms it: fresh for a second
$ttfb{hit} = best_of(5, sub { ttfb($tr, "$fpath?hit") });

$fake->set_flag('mode', 'hang');
sleep 1.2;                          # the tag expires
$fake->reset_requests;

my $check = bg_ttfb($tr, "$fpath?check");
wait_for(sub { $fake->requests_matching('HEAD', qr{/manifests/}) }, 10)
    or die "no check of $fpath reached the fake upstream\n";
$ttfb{updating} = best_of(5, sub { ttfb($tr, "$fpath?during") });
$ttfb{check} = $check->();

# background: once the back-off after the failed check is over
$tr->set_conf(revalidate_conf('background'));
$tr->reload;
sleep 1.2;
warm_workers($tr, $fdigest);
$fake->reset_requests;
$ttfb{background} = ttfb($tr, "$fpath?background");
wait_for(sub { $fake->requests_matching('HEAD', qr{/manifests/}) }, 10)
    or die "background mode: no check of $fpath after the answer\n";

wait_for(sub { grep { $_->{uri} =~ /[?]background$/ } cache_log($tr) }, 10);
my %status;
for my $l (cache_log($tr)) {
    my ($k) = $l->{uri} =~ /[?](hit|check|during|background)$/ or next;
    $status{$k}{ $l->{cache} }++;
}

$fake->set_flag('go');
$tr->stop;
$fake->stop;
$reg->stop;

my $mb = 1024 * 1024;

printf "\nngx_pullthrough benchmark (%s, %d rounds of %ds, best kept)\n\n",
       scalar localtime, $ROUNDS, $DURATION;

printf "%-34s %14s %14s %8s\n", '', 'module', 'stock nginx', 'ratio';
printf "%-34s %11.0f MB/s %11.0f MB/s %8.2f\n",
       "hit, $large->{size_h} blob, throughput",
       $rate{large}{module}{bps} / $mb, $rate{large}{stock}{bps} / $mb,
       $rate{large}{module}{bps} / $rate{large}{stock}{bps};
printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
       "hit, $small->{size_h} blob, requests",
       $rate{small}{module}{rps}, $rate{small}{stock}{rps},
       $rate{small}{module}{rps} / $rate{small}{stock}{rps};
printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
       "hit, manifest by tag ($manifest->{size_h})",
       $rate{manifest}{module}{rps}, $rate{manifest}{stock}{rps},
       $rate{manifest}{module}{rps} / $rate{manifest}{stock}{rps};

printf "\n%-34s %14s %14s %8s\n", '', 'cache', 'upstream', 'ratio';
printf "%-34s %12.2f s %12.2f s %8.2f\n",
       "cold pull of library/big:1.0", $cold, $direct, $cold / $direct;
printf "%-34s %12.2f s %12.2f s %8.2f\n",
       "cold pull, libcurl transport", $cold_curl, $direct,
       $cold_curl / $direct;
printf "%-34s %12.2f s %14s\n", "warm pull (all hits)", $warm, '';

printf "\n%-34s %14s %14s %14s %10s\n", '200 at once for an expired tag',
       'upstream reqs', 'answers 200', 'first byte p50', 'max';
for my $mode (qw(updating wait)) {
    for my $up ([ registry => 'the registry' ],
                [ slow => 'a HEAD of 0.5 s' ])
    {
        my $b = $burst{$mode}{ $up->[0] };
        printf "%-34s %14d %14d %11.1f ms %7.1f ms\n", "$mode, $up->[1]",
               $b->{upstream}, $b->{ok}, $b->{median}, $b->{max};
        printf "%-34s %s\n", '', status_list($b->{status});
    }
}

printf "\n%-34s %14s %14s\n", 'upstream hanging, expired tag', 'first byte',
       'cache status';
printf "%-34s %11.1f ms %14s\n", "fresh hit (reference)",
       $ttfb{hit}{ms}, status_list($status{hit});
printf "%-34s %11.1f ms %14s\n", "the check (timeout ${CHECK_TIMEOUT}s)",
       $ttfb{check}{ms}, status_list($status{check});
printf "%-34s %11.1f ms %14s\n", "another meanwhile (updating)",
       $ttfb{updating}{ms}, status_list($status{during});
printf "%-34s %11.1f ms %14s\n", "the first one, background mode",
       $ttfb{background}{ms}, status_list($status{background});

printf "\ntargets: hit ratios >= 0.90, cold pull ratio <= 1.20, 1 upstream "
       . "request for 200 at once,\n         the check ~ %d ms "
       . "(pullthrough_tag_revalidate_timeout), the other stale\n"
       . "         answers as fast as a hit\n", $CHECK_TIMEOUT * 1000;

Test::More->builder->no_ending(1);

exit 0;


sub layers {
    my ($info) = @_;
    my @out;

    for my $i (0 .. $#{ $info->{layers} }) {
        my $size = $info->{layer_sizes}[$i];
        push @out, { digest => $info->{layers}[$i], size => $size,
                     size_h => human($size) };
    }

    push @out, { digest => $info->{config}, size => $info->{config_size},
                 size_h => human($info->{config_size}) };

    return @out;
}


sub human {
    my ($n) = @_;
    return sprintf('%.0f MiB', $n / 1048576) if $n >= 1048576;
    return sprintf('%.0f KiB', $n / 1024) if $n >= 1024;
    return "$n B";
}


sub pull {
    my ($src, $dst) = @_;

    my $start = time;
    system('skopeo', 'copy', '--quiet', '--src-tls-verify=false', $src,
           "dir:$dst") == 0
        or die "skopeo copy $src failed\n";

    return time - $start;
}


sub wrk {
    my ($url, @opts) = @_;

    my $out = run_output('wrk', @opts, "-d${DURATION}s", $url);

    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my ($tps, $unit) = $out =~ /Transfer\/sec:\s+([\d.]+)(\w+)/;
    die "wrk failed: $out\n" unless defined $rps && defined $tps;

    my %mult = (B => 1, KB => 1024, MB => 1024 ** 2, GB => 1024 ** 3);

    return { rps => $rps, bps => $tps * ($mult{$unit} || 1) };
}


# STORE/blobs/<alg>/<xx>/<hex> of a digest
sub store_file {
    my ($t, $digest) = @_;
    my ($alg, $hex) = split /:/, $digest;
    return $t->store . "/blobs/$alg/" . substr($hex, 0, 2) . "/$hex";
}


# the nginx of expired tags: two workers, cache.log, a short check
sub revalidate_conf {
    my ($mode) = @_;
    return cache_conf(workers => 2, http => 'open_file_cache max=1000 inactive=60s;',
                      registry => "pullthrough_tag_revalidate $mode; "
                          . "pullthrough_tag_revalidate_timeout ${CHECK_TIMEOUT}s;");
}


# $n concurrent GETs of $path (curl, one connection each, all opened at
# once: without --parallel-immediate curl waits for the first answer to see
# whether it can multiplex, and the others come after the check); returns
# { ok (answers 200), median and max (ms to the first byte), status
# (cache status => count) }
sub burst {
    my ($t, $path, $n, $tag) = @_;

    my $cfg = "$work/burst-$tag.cfg";
    spew($cfg, join '', map {
        "url = \"" . $t->base_url . "$path?burst=$tag-$_\"\n"
        . "output = \"/dev/null\"\n"
    } 1 .. $n);

    my $out = run_output('curl', '-s', '--no-progress-meter', '-Z',
                         '--parallel-immediate', '--parallel-max', $n,
                         '-H', "Accept: $ACCEPT",
                         '-w', '%{http_code} %{time_starttransfer}\n',
                         '-K', $cfg);

    my @lines;
    wait_for(sub {
        @lines = grep { $_->{uri} =~ /[?]burst=\Q$tag\E-/ } cache_log($t);
        @lines == $n;
    }, 10);
    my %status;
    $status{ $_->{cache} }++ for @lines;

    my @answers = map { [ split / / ] } split /\n/, $out;
    my @ms = sort { $a <=> $b } map { $_->[1] * 1000 } @answers;
    die "curl: no answers\n" unless @ms;

    return { ok => scalar(grep { $_->[0] eq '200' } @answers),
             median => $ms[ $#ms / 2 ], max => $ms[-1], status => \%status };
}


# requests for $path (a hit) until both workers answered some: the first
# request a new worker serves (after a reload) takes a few ms more
my $WARM;

sub warm_workers {
    my ($t, $path) = @_;
    my %pids;
    for (1 .. 50) {
        my $q = 'warm=' . ++$WARM;
        $t->get("$path?$q", headers => { Accept => $ACCEPT });
        wait_for(sub {
            my ($l) = grep { $_->{uri} =~ /[?]\Q$q\E$/ } cache_log($t);
            $pids{ $l->{pid} } = 1 if $l;
            $l;
        }, 10);
        last if keys %pids == 2;
    }
}


# "HIT x150, UPDATING x49" of { status => count }
sub status_list {
    my ($st) = @_;
    return join ', ', map { "$_ x$st->{$_}" } sort keys %{ $st || {} };
}


# curl for a GET of $path, printing its status and time to first byte
sub curl_ttfb {
    my ($t, $path) = @_;
    return ('curl', '-s', '--no-progress-meter', '-o', '/dev/null',
            '-H', "Accept: $ACCEPT",
            '-w', '%{http_code} %{time_starttransfer}', $t->base_url . $path);
}

# the time to the first byte of a GET: { status, ms }
sub ttfb {
    my ($t, $path) = @_;
    return parse_ttfb(run_output(curl_ttfb($t, $path)));
}

# ttfb in the background: returns a function that waits for its result
sub bg_ttfb {
    my ($t, $path) = @_;
    my (undef, $fh) = open_cmd(curl_ttfb($t, $path));
    return sub {
        local $/;
        my $out = <$fh> // '';
        close $fh;
        return parse_ttfb($out);
    };
}

sub parse_ttfb {
    my ($out) = @_;
    my ($status, $s) = $out =~ /^(\d{3}) ([\d.]+)$/
        or die "curl failed: $out\n";
    die "curl: status $status\n" unless $status == 200;
    return { status => $status, ms => $s * 1000 };
}

# the fastest of $n runs of $code (each returning { ms })
sub best_of {
    my ($n, $code) = @_;
    my $best;
    for (1 .. $n) {
        my $r = $code->();
        $best = $r if !$best || $r->{ms} < $best->{ms};
    }
    return $best;
}
