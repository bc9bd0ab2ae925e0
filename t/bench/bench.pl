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
#      and the first one in background mode (UPDATING), next to a fresh hit;
#   6. requests/s of hits of a hot blob while the store is at its cap
#      (pullthrough_store max_size=4m) and the cache manager keeps evicting:
#      clients pull other blobs in a loop, each a miss that the manager
#      evicts again, against stock nginx serving the hot blob's file under
#      the same load (target: ratio >= 0.9); the hot blob, read all along,
#      must stay (no upstream fetch of it);
#   7. eviction throughput: 2000 blobs over a 1 MiB cap at once (filled while
#      the cache manager was stopped, SIGSTOP, then let go on), the files
#      the manager removes per second until the store is within max_size,
#      and the latency of hits of a hot blob in a loop (one keep-alive
#      connection) during the eviction against just before it: twice,
#      hits at 2000/s, then as fast as they come;
#   8. admin lists at growing store sizes: synthetic images (a tag, a
#      manifest, a config and 9 layers each, one repository each) in the
#      upstream registry, pulled through the cache in stages up to 10,000
#      repositories and 100,000 blobs; at each stage the first page (limit
#      10 and 100) of every list and filter, median and worst of a few
#      requests (target: < 20 ms), and what the worker's peak memory grew
#      by over all of them; at the last stage, hits of a hot blob alone and
#      while a client requests lists in a loop (target: ratio >= 0.9);
#   9. cold pulls from a far TLS upstream: docker-registry behind a TLS
#      terminator (stock nginx) behind a latency proxy of our own (25 ms
#      each way, an RTT of 50 ms); a small, a multi-arch and a large image
#      pulled cold with skopeo: straight from the upstream, through the
#      cache over the proxy-module transport and over libcurl; then the
#      same, direct and over libcurl, from a terminator that offers HTTP/2
#      (the proxy module speaks HTTP/1.1 to upstreams); medians, and
#      the TCP connections each pull opened to the far upstream (target:
#      each through the cache within the direct pull + one RTT);
#  10. a cluster of three caches behind an nginx balancer (PT::Cluster:
#      the configuration of docs/several-caches.md): the ten images of the
#      fleet set (shared layers) pulled at once through the balancer, and
#      the upstream downloads per distinct blob for the whole cluster, with
#      the page's key (blobs by digest; target: 1.0) and, for comparison,
#      with every request keyed by its repository; then hits through the
#      balancer against the same hits straight from the node that has the
#      blob (a 3 MiB blob's throughput, a small blob's requests/s).
#
# Load comes from wrk on loopback; each figure is the best of a few short
# runs so that one noisy second does not decide it.
#
# Sections: all by default; to run some only, name them as arguments or in
# BENCH_ONLY (spaces or commas between names), e.g.
#   perl -I t/lib t/bench/bench.pl evict-hits evict-rate
#   BENCH_ONLY=eviction make bench
#
#   hits        1. to 3. (hits against stock nginx, cold pulls)
#   tags        4. and 5. (expired tags)
#   evict-hits  6.
#   evict-rate  7.
#   eviction    6. and 7.
#   lists       8. (BENCH_LIST_STAGES=100,1000,10000: the stages, in images)
#   far         9.
#   cluster     10.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';

use Digest::SHA qw(sha256_hex);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Text::Wrap qw(wrap $columns);
use Time::HiRes qw(time sleep);

use Test::More;     # PT::Nginx reports through it; bench prints its own

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Certs;
use PT::FakeUpstream;
use PT::LatencyProxy;
use PT::Cluster;
use PT::Pull qw(cache_conf cache_log wait_for);
use PT::Util qw(open_cmd run_output slurp spew);

my $DURATION = $ENV{BENCH_SECONDS} || 4;
my $ROUNDS = $ENV{BENCH_ROUNDS} || 3;
my $ACCEPT = $PT::Images::ACCEPT;
my $CHECK_TIMEOUT = 2;     # s: pullthrough_tag_revalidate_timeout in 5.

$columns = 80;
$Text::Wrap::unexpand = 0;

my $KiB = 1024;
my $MiB = 1024 * 1024;

# 6.: the cap, the blobs (the hot one and the others, pulled in a loop:
# 2.3 times the cap, so that each of their pulls is a miss), the clients
# pulling them
my $EH_CAP = 4 * $MiB;
my $EH_SIZE = 16 * $KiB;
my $EH_BLOBS = 600;
my $EH_CLIENTS = 4;
# 7.: the cap, the blobs over it, the seconds of hits measured before
my $ER_CAP = 1 * $MiB;
my $ER_SIZE = 16 * $KiB;
my $ER_BLOBS = 2000;
my $ER_BEFORE = 2;
my $ER_PACE = 2000;        # hits a second, in the first run

my $LOOPS = 0;             # get_loop's children so far
# the numbers of the system calls of epoll_wait (stop_manager)
my %EPOLL_WAIT = (x86_64 => [ 232, 281, 441 ], aarch64 => [ 22, 441 ]);

# 8.: the stages (images, one repository each), layers an image, requests
# of each list at each stage, lists a second in the paced loop beside hits
my @LS_STAGES = split /,/, ($ENV{BENCH_LIST_STAGES} || '100,1000,10000');
my $LS_LAYERS = 9;
my $LS_TRIES = 7;
my $LS_PACE = 20;

# 9.: the delay each way, runs of each pull, the images (a label, the
# reference)
my $FAR_DELAY = 0.025;
my $FAR_RUNS = $ENV{BENCH_FAR_RUNS} || 3;
my @FAR_IMAGES = ([ 'small (hello, 2 layers)' => 'library/hello:1.0' ],
                  [ 'multi-arch (one platform)' => 'library/multi:1.0' ],
                  [ 'large (big, 100 MiB)' => 'library/big:1.0' ]);

my @SECTIONS = qw(hits tags evict-hits evict-rate lists far cluster);
my %ALIASES = (eviction => [ qw(evict-hits evict-rate) ]);

my %WANT = sections(@ARGV ? @ARGV : ($ENV{BENCH_ONLY} // ''));

sub want { return $WANT{ $_[0] } }

-x '/usr/bin/wrk' or die "wrk is not installed (make bench installs it)\n";

my $work = tempdir('pt-bench-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = want('far') ? PT::Images::seed($reg, qw(hello multi big))
        : want('hits') ? PT::Images::seed($reg, qw(hello big))
        : want('tags') ? PT::Images::seed($reg, qw(hello))
        : {};

my $hits = want('hits') ? bench_hits() : undef;
my $tags = want('tags') ? bench_tags() : undef;
my $evh = want('evict-hits') ? bench_evict_hits() : undef;
my $evr = want('evict-rate') ? bench_evict_rate() : undef;
my $lists = want('lists') ? bench_lists() : undef;
my $far = want('far') ? bench_far() : undef;
my $cluster = want('cluster') ? bench_cluster() : undef;

$reg->stop;

printf "\nngx_pullthrough benchmark (%s, %d rounds of %ds, best kept)\n",
       scalar localtime, $ROUNDS, $DURATION;

my @targets;

if ($hits) {
    my ($rate, $large, $small, $manifest) =
        @$hits{qw(rate large small manifest)};

    printf "\n%-34s %14s %14s %8s\n", '', 'module', 'stock nginx', 'ratio';
    printf "%-34s %11.0f MB/s %11.0f MB/s %8.2f\n",
           "hit, $large->{size_h} blob, throughput",
           $rate->{large}{module}{bps} / $MiB,
           $rate->{large}{stock}{bps} / $MiB,
           $rate->{large}{module}{bps} / $rate->{large}{stock}{bps};
    printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
           "hit, $small->{size_h} blob, requests",
           $rate->{small}{module}{rps}, $rate->{small}{stock}{rps},
           $rate->{small}{module}{rps} / $rate->{small}{stock}{rps};
    printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
           "hit, manifest by tag ($manifest->{size_h})",
           $rate->{manifest}{module}{rps}, $rate->{manifest}{stock}{rps},
           $rate->{manifest}{module}{rps} / $rate->{manifest}{stock}{rps};

    printf "\n%-34s %14s %14s %8s\n", '', 'cache', 'upstream', 'ratio';
    printf "%-34s %12.2f s %12.2f s %8.2f\n",
           "cold pull of library/big:1.0", $hits->{cold}, $hits->{direct},
           $hits->{cold} / $hits->{direct};
    printf "%-34s %12.2f s %12.2f s %8.2f\n",
           "cold pull, libcurl transport", $hits->{cold_curl},
           $hits->{direct}, $hits->{cold_curl} / $hits->{direct};
    printf "%-34s %12.2f s %14s\n", "warm pull (all hits)", $hits->{warm},
           '';

    push @targets, 'hit ratios >= 0.90', 'cold pull ratio <= 1.20';
}

if ($tags) {
    my ($burst, $ttfb, $status) = @$tags{qw(burst ttfb status)};

    printf "\n%-34s %14s %14s %14s %10s\n", '200 at once for an expired tag',
           'upstream reqs', 'answers 200', 'first byte p50', 'max';
    for my $mode (qw(updating wait)) {
        for my $up ([ registry => 'the registry' ],
                    [ slow => 'a HEAD of 0.5 s' ])
        {
            my $b = $burst->{$mode}{ $up->[0] };
            printf "%-34s %14d %14d %11.1f ms %7.1f ms\n", "$mode, $up->[1]",
                   $b->{upstream}, $b->{ok}, $b->{median}, $b->{max};
            printf "%-34s %s\n", '', status_list($b->{status});
        }
    }

    printf "\n%-34s %14s %14s\n", 'upstream hanging, expired tag',
           'first byte', 'cache status';
    printf "%-34s %11.1f ms %14s\n", "fresh hit (reference)",
           $ttfb->{hit}{ms}, status_list($status->{hit});
    printf "%-34s %11.1f ms %14s\n", "the check (timeout ${CHECK_TIMEOUT}s)",
           $ttfb->{check}{ms}, status_list($status->{check});
    printf "%-34s %11.1f ms %14s\n", "another meanwhile (updating)",
           $ttfb->{updating}{ms}, status_list($status->{during});
    printf "%-34s %11.1f ms %14s\n", "the first one, background mode",
           $ttfb->{background}{ms}, status_list($status->{background});

    push @targets, '1 upstream request for 200 at once',
        sprintf('the check ~ %d ms (pullthrough_tag_revalidate_timeout)',
                $CHECK_TIMEOUT * 1000),
        'the other stale answers as fast as a hit';
}

if ($evh) {
    my $r = $evh->{rate};

    printf "\n%-34s %14s %14s %8s\n",
           'store at its cap (' . human($EH_CAP) . '), evicting',
           'module', 'stock nginx', 'ratio';
    printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
           'hit, hot ' . human($EH_SIZE) . ' blob, requests',
           $r->{module}{rps}, $r->{stock}{rps},
           $r->{module}{rps} / $r->{stock}{rps};
    printf "%-34s %12.0f /s\n", '  meanwhile: misses (fills)',
           $evh->{fills_s};
    printf "%-34s %12.0f /s\n", '  meanwhile: files evicted',
           $evh->{evicted_s};
    printf "%-34s %s\n", '  hot blob fetched again',
           "$evh->{hot_fetched} times";
    printf "%-34s %s\n", '  store at the end',
           sprintf('%d files, %.0f KiB (max_size %.0f KiB)', $evh->{files},
                   $evh->{bytes} / $KiB, $EH_CAP / $KiB);

    push @targets, 'hit ratio at the cap >= 0.90, the hot blob never '
                   . 'fetched again';
}

if ($evr) {
    my ($paced, $flat) = @$evr{qw(paced flat)};

    printf "\n%-34s %14s %14s %14s\n",
           "eviction, $paced->{files} files (" . human($paced->{bytes})
           . ')', 'files removed', 'time', 'files/s';
    for my $run ([ $paced, "hits at $ER_PACE/s" ],
                 [ $flat, 'hits flat out' ])
    {
        my ($r, $label) = @$run;
        printf "%-34s %14d %12.2f s %14.0f\n",
               'to ' . human($ER_CAP) . ", $label", $r->{removed},
               $r->{seconds}, $r->{removed} / $r->{seconds};
    }

    printf "\n%-34s %14s %14s %14s %10s\n",
           'hits of a hot blob, a connection', 'requests/s', 'p50', 'p99',
           'max';
    for my $run ([ $paced, "$ER_PACE/s" ], [ $flat, 'flat out' ]) {
        my ($r, $label) = @$run;
        for my $w (qw(before during)) {
            my $l = $r->{$w};
            printf "%-34s %14.0f %11.3f ms %11.3f ms %7.2f ms\n",
                   "$label, $w the eviction", $l->{rps}, $l->{p50},
                   $l->{p99}, $l->{max};
        }
    }
    printf "%-34s %s\n", '  hot blob kept, answers 200',
           join '; ', map {
               ($_->{hot_kept} ? 'yes' : 'NO')
               . ", $_->{ok} of $_->{answers}"
           } $paced, $flat;

    push @targets, 'the store within max_size, hits during eviction about '
                   . 'as fast as before';
}

if ($lists) {
    my @stages = @{ $lists->{stages} };
    my $cols = " %15s" x @stages;

    printf "\n%-34s$cols\n", 'admin lists, first page, ms',
           map { "$_->{images} images" } @stages;
    printf "%-34s$cols\n", '  median / worst', map { "$_->{blobs} blobs" } @stages;
    for my $i (0 .. $#{ $stages[0]{lists} }) {
        printf "%-34s$cols\n", $stages[0]{lists}[$i]{label},
               map { sprintf '%6.2f / %6.2f', @{ $_->{lists}[$i] }{qw(p50 max)} }
               @stages;
    }
    printf "%-34s$cols\n", 'worker peak memory grew by',
           map { human($_->{hwm_kib} * 1024) } @stages;
    printf "%-34s$cols\n", 'files in the store', map { $_->{files} } @stages;
    printf "%-34s$cols\n", 'filling the stage took',
           map { sprintf '%.0f s', $_->{fill_s} } @stages;

    my $h = $lists->{hits};
    printf "\n%-34s %14s %14s %8s %10s\n", 'hits of a hot 16 KiB blob',
           'with lists', 'hits alone', 'ratio', 'lists/s';
    for my $run ([ paced => "lists at $LS_PACE/s" ],
                 [ flat => 'lists as fast as they come' ])
    {
        my ($k, $label) = @$run;
        printf "%-34s %10.0f r/s %10.0f r/s %8.2f %10.0f\n", $label,
               $h->{$k}{rps}, $h->{alone}{rps},
               $h->{$k}{rps} / $h->{alone}{rps}, $h->{$k}{lists_s};
    }

    push @targets, 'every first page < 20 ms at every size, the peak '
                   . 'memory growing by a few MiB at most, hits with lists '
                   . "at $LS_PACE/s >= 0.90 of hits alone";
}

if ($far) {
    printf "\n%-34s %14s %14s %14s %14s %14s\n",
           sprintf('cold pull, RTT %.0f ms, TLS', $FAR_DELAY * 2000),
           'direct', 'proxy module', 'libcurl', 'direct, h2', 'libcurl, h2';
    my @how = qw(direct module curl direct2 curl2);
    for my $i (@{ $far->{images} }) {
        printf "%-34s" . (" %12.2f s" x 5) . "\n", $i->{name},
               map { $i->{$_}{s} } @how;
        printf "%-34s" . (" %14s" x 5) . "\n", '  connections to the upstream',
               map { $i->{$_}{conns} } @how;
        printf "%-34s %14s %12.0f ms %12.0f ms %14s %12.0f ms\n",
               '  over the direct pull', '',
               (map { ($i->{$_}{s} - $i->{direct}{s}) * 1000 } qw(module curl)),
               '', ($i->{curl2}{s} - $i->{direct2}{s}) * 1000;
    }

    push @targets, sprintf('each cold pull through the cache within the '
                           . 'direct pull + %.0f ms (one RTT)', $FAR_DELAY * 2000);
}

if ($cluster) {
    printf "\n%-34s %14s %14s %14s\n",
           "3 nodes, $cluster->{refs} images pulled at once",
           'downloads', 'blobs', 'per blob';
    for my $k ([ digest => 'key: blob digest (the page)' ],
               [ repository => 'key: repository' ])
    {
        my ($key, $label) = @$k;
        printf "%-34s %14d %14d %14.2f\n", $label, $cluster->{$key}{gets},
               $cluster->{blobs}, $cluster->{$key}{gets} / $cluster->{blobs};
    }

    my $h = $cluster->{hits};
    printf "\n%-34s %14s %14s %8s\n", 'hits through the balancer',
           'balancer', 'node direct', 'ratio';
    printf "%-34s %11.0f MB/s %11.0f MB/s %8.2f\n",
           "hit, $h->{large}{size_h} blob, throughput",
           $h->{large}{module}{bps} / $MiB, $h->{large}{stock}{bps} / $MiB,
           $h->{large}{module}{bps} / $h->{large}{stock}{bps};
    printf "%-34s %12.0f r/s %12.0f r/s %8.2f\n",
           "hit, $h->{small}{size_h} blob, requests",
           $h->{small}{module}{rps}, $h->{small}{stock}{rps},
           $h->{small}{module}{rps} / $h->{small}{stock}{rps};

    push @targets, '1.00 upstream download per distinct blob for the '
                   . 'cluster (blobs keyed by digest)';
}

print "\n", wrap('targets: ', ' ' x 9, join(', ', @targets)), "\n"
    if @targets;

Test::More->builder->no_ending(1);

exit 0;


# the sections asked for (names as arguments or in BENCH_ONLY), all when
# none is named
sub sections {
    my (@args) = @_;

    my @names = grep { length } map { split /[\s,]+/ } @args;
    return map { $_ => 1 } @SECTIONS unless @names;

    my %want;
    for my $n (@names) {
        my @s = $ALIASES{$n} ? @{ $ALIASES{$n} }
              : (grep { $_ eq $n } @SECTIONS) ? ($n)
              : die "unknown section $n (sections: @SECTIONS "
                    . join(' ', sort keys %ALIASES) . ")\n";
        $want{$_} = 1 for @s;
    }
    return %want;
}


# 1. to 3.: hits against stock nginx, cold pulls
sub bench_hits {
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

    my $remote = PT::Pulp::create_remote($t, name => 'bench',
                                         url => $reg->url);
    PT::Pulp::create_dist($t, name => 'bench', base_path => 'bench',
                          remote => $remote->{pulp_href});

    # the libcurl transport: another nginx with a store of its own (blob
    # files are shared by repositories: one store would make its pull all
    # hits)
    my $tc = PT::Nginx->new(conf => plain_conf());
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

    my $direct = pull("docker://" . $reg->host . "/library/big:1.0",
                      "$work/direct");
    my $cold = pull("docker://127.0.0.1:" . $t->port
                    . "/bench/library/big:1.0", "$work/cold");
    my $cold_curl = pull("docker://127.0.0.1:" . $tc->port
                         . "/bench/library/big:1.0", "$work/cold-curl");
    $tc->stop;
    my $warm = pull("docker://127.0.0.1:" . $t->port
                    . "/bench/library/big:1.0", "$work/warm");

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
                  [ manifest => $manifest, '-t1', '-c16',
                    '-H', "Accept: $ACCEPT" ])
    {
        my ($name, $blob, @opts) = @$case;

        my $module = "http://127.0.0.1:" . $t->port
                     . ($blob->{path}
                        // "/v2/bench/library/"
                           . ($name eq 'large' ? 'big' : 'hello')
                           . "/blobs/$blob->{digest}");

        $rate{$name} = best_rates($module, stock_url($t, $blob->{digest}),
                                  @opts);
    }

    $t->stop;

    return { rate => \%rate, large => $large, small => $small,
             manifest => $manifest, direct => $direct, cold => $cold,
             cold_curl => $cold_curl, warm => $warm };
}


# 4. and 5.: expired tags. Another nginx, two workers (a check is shared
# by every worker), a cache.log with $pullthrough_cache_status; a remote on
# the registry, another on a fake upstream whose HEADs of manifests take
# 0.5 s (flag mode=slow) or never end (mode=hang)
sub bench_tags {
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

    # 4. 200 concurrent requests for an expired tag: upstream manifest
    # requests

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

    wait_for(sub { grep { $_->{uri} =~ /[?]background$/ } cache_log($tr) },
             10);
    my %status;
    for my $l (cache_log($tr)) {
        my ($k) = $l->{uri} =~ /[?](hit|check|during|background)$/ or next;
        $status{$k}{ $l->{cache} }++;
    }

    $fake->set_flag('go');
    $tr->stop;
    $fake->stop;

    return { burst => \%burst, ttfb => \%ttfb, status => \%status };
}


# the cache with max_size=$cap, one worker, a distribution "bench" on the
# registry; with $stock, stock nginx serves the store's files on %%PORT2%%
sub start_evict_cache {
    my ($cap, $stock) = @_;

    my $reference = $stock ? <<'EOF' : '';

    # the reference: stock nginx, the same files, the same settings
    server {
        listen 127.0.0.1:%%PORT2%%;
        location /blobs/ { root %%STORE%%; }
    }
EOF

    my $t = PT::Nginx->new(conf => <<"EOF");
worker_processes 1;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    open_file_cache max=1000 inactive=60s;
    pullthrough_store %%STORE%% max_size=$cap;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ { pullthrough_registry; }
        location /pulp/api/v3/ { pullthrough_admin; }
    }
$reference}
EOF
    $t->start;

    my $remote = PT::Pulp::create_remote($t, name => 'bench-evict',
                                         url => $reg->url);
    PT::Pulp::create_dist($t, name => 'bench-evict', base_path => 'bench',
                          remote => $remote->{pulp_href});

    return $t;
}


# 6. hits of a hot blob while the store is at its cap and the cache
# manager keeps evicting: $EH_CLIENTS clients pull $EH_BLOBS other blobs in
# a loop ($EH_BLOBS / $EH_CAP times the cap: each pull is a miss, whose
# file the manager soon evicts), and read the hot blob every 20 pulls
# (while wrk reads stock nginx's copy of its file, the module sees it read
# too, and the least recently used order keeps it). Rounds alternate
# between the module and stock nginx, under the same load
sub bench_evict_hits {
    my @blobs = seed_blobs('load/churn', $EH_BLOBS + 1, $EH_SIZE);
    my $hot = shift @blobs;

    my $t = start_evict_cache($EH_CAP, 1);

    my $path = sub { "/v2/bench/load/churn/blobs/$_[0]" };

    # the store over its cap: the manager evicts down to it
    fill($t, map { $path->($_) } $hot, @blobs);

    my @clients;
    for my $c (0 .. $EH_CLIENTS - 1) {
        my @mine = map { $path->($blobs[$_]) }
                   grep { $_ % $EH_CLIENTS == $c } 0 .. $#blobs;
        my $i = 0;
        push @clients, get_loop($t->port, sub {
            return $i++ % 20 == 0 ? $path->($hot) : $mine[ $i % @mine ];
        });
    }

    sleep 1;                            # evicting
    my ($files0) = store_usage($t);
    $reg->reset_requests;
    my $start = time;

    my $rate = best_rates("http://127.0.0.1:" . $t->port . $path->($hot),
                          stock_url($t, $hot), '-t1', '-c16');

    my $seconds = time - $start;
    my @fetched = $reg->requests_matching('GET', qr{/blobs/});
    my ($files, $bytes) = store_usage($t);
    my @answers = map { stop_loop($_) } @clients;

    my @bad = grep { $_->{status} != 200 } @answers;
    die "6.: " . @bad . " of the clients' pulls failed (status "
        . $bad[0]{status} . ")\n" if @bad;

    $t->stop;

    return { rate => $rate,
             fills_s => @fetched / $seconds,
             evicted_s => (@fetched - ($files - $files0)) / $seconds,
             hot_fetched => scalar(grep { $_->{path} =~ /\Q$hot\E$/ }
                                   @fetched),
             files => $files, bytes => $bytes };
}


# 7. eviction throughput: the cache manager stopped (SIGSTOP, while it
# waits for its next turn), $ER_BLOBS blobs pulled over the cap of
# $ER_CAP, the manager let go on (SIGCONT): the files under blobs/ are
# counted until they are within max_size. Meanwhile a client reads a hot
# blob in a loop on one keep-alive connection: the latency of its hits
# during the eviction, against the $ER_BEFORE seconds before it. Twice:
# hits at a steady $ER_PACE a second (the machine has time to spare: what
# eviction does to hits by itself), then as fast as they come (the client
# and the worker take both cores: the manager competes with them)
sub bench_evict_rate {
    my @blobs = seed_blobs('load/evict', $ER_BLOBS + 1, $ER_SIZE);
    my $hot = shift @blobs;

    my $t = start_evict_cache($ER_CAP, 0);

    my $path = sub { "/v2/bench/load/evict/blobs/$_[0]" };

    my %res;
    for my $run ([ paced => 1 / $ER_PACE ], [ flat => 0 ]) {
        my ($name, $pace) = @$run;

        my $manager = stop_manager($t);
        my $resumed;
        $res{$name} = eval {
            fill($t, map { $path->($_) } $hot, @blobs);

            my ($files0, $bytes0) = store_usage($t);
            die "7.: the store holds $files0 files, "
                . human($bytes0) . ": not over its cap\n"
                if $bytes0 <= $ER_CAP;

            my $probe = get_loop($t->port, sub { $path->($hot) }, $pace);
            sleep 0.5;                  # connected, going
            my $tb = time;
            sleep $ER_BEFORE;

            my $t0 = time;
            kill 'CONT', $manager;
            $resumed = 1;

            my ($files, $bytes);
            while (1) {
                ($files, $bytes) = store_usage($t);
                last if $bytes <= $ER_CAP;
                die "7.: the store still holds $files files, "
                    . human($bytes) . ", 60 s after the cache manager "
                    . "went on\n"
                    if time - $t0 > 60;
                sleep 0.02;
            }
            my $t1 = time;

            my @answers = stop_loop($probe);

            {
                files => $files0,
                bytes => $bytes0,
                removed => $files0 - $files,
                seconds => $t1 - $t0,
                before => latency(grep { $_->{start} >= $tb
                                         && $_->{start} < $t0 } @answers),
                during => latency(grep { $_->{start} >= $t0
                                         && $_->{start} < $t1 } @answers),
                hot_kept => -f store_file($t, $hot) ? 1 : 0,
                ok => scalar(grep { $_->{status} == 200 } @answers),
                answers => scalar @answers,
            };
        };
        my $err = $@;
        kill 'CONT', $manager unless $resumed;
        die $err unless $res{$name};
    }

    $t->stop;

    return \%res;
}


# 9. cold pulls from a far TLS upstream: docker-registry behind a TLS
# terminator (stock nginx) behind PT::LatencyProxy ($FAR_DELAY each way);
# each image pulled cold with skopeo, $FAR_RUNS times: straight from the
# far upstream, and through a cache with an empty store, over the
# proxy-module transport (a remote with tls_validation false) and over
# libcurl (a remote with the CA of the terminator's certificate). Returns
# { images => [ { name, direct, module, curl, direct2, curl2 } ] } (2: the
# HTTP/2 terminator), each a { s (median),
# conns (median of the connections to the far upstream a pull opened) }
sub bench_far {
    make_path("$work/far-ca");
    my $ca = PT::Certs->new(dir => "$work/far-ca");
    my $srv = $ca->server(name => 'far', ip => [ '127.0.0.1' ]);

    my $front = PT::Nginx->new(conf => <<"EOF")->start;
worker_processes 1;
http {
    access_log off;
    server {
        # HTTP/1.1 only, and HTTP/2 offered
        listen 127.0.0.1:%%PORT%% ssl;
        listen 127.0.0.1:%%PORT2%% ssl http2;
        ssl_certificate $srv->{cert};
        ssl_certificate_key $srv->{key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:far:1m;
        keepalive_requests 10000;
        location / {
            proxy_pass http://127.0.0.1:@{[ $reg->port ]};
            proxy_http_version 1.1;
            proxy_buffering off;
            client_max_body_size 0;
        }
    }
}
EOF
    my %lp = map {
        ($_->[0] => PT::LatencyProxy->new(to => '127.0.0.1:' . $front->port($_->[1]),
                                          delay => $FAR_DELAY)->start)
    } ([ h1 => 1 ], [ h2 => 2 ]);

    my @out;
    for my $image (@FAR_IMAGES) {
        my ($label, $ref) = @$image;
        my %runs;

        for my $n (1 .. $FAR_RUNS) {
            for my $how (qw(direct module curl direct2 curl2)) {
                my $t;
                my $lp = $lp{ $how =~ /2$/ ? 'h2' : 'h1' };
                my $far = 'https://127.0.0.1:' . $lp->port;
                my $src = "docker://127.0.0.1:" . $lp->port . "/$ref";

                if ($how !~ /^direct/) {
                    $t = PT::Nginx->new(conf => cache_conf())->start;
                    my %tls = $how =~ /^curl/
                        ? (ca_cert => $ca->ca_text)
                        : (tls_validation => JSON::PP::false);
                    my $remote = PT::Pulp::create_remote($t, name => 'far',
                                                         url => $far, %tls);
                    PT::Pulp::create_dist($t, name => 'far', base_path => 'far',
                                          remote => $remote->{pulp_href});
                    $src = "docker://127.0.0.1:" . $t->port . "/far/$ref";
                }

                $lp->reset_requests;
                my $s = pull($src, "$work/far-$how-$n-" . ($ref =~ tr{/:}{__}r));
                push @{ $runs{$how} }, { s => $s, conns => scalar($lp->requests) };

                $t->stop if $t;
            }
        }

        push @out, { name => $label, map {
            my @r = @{ $runs{$_} };
            my @s = sort { $a <=> $b } map { $_->{s} } @r;
            my @c = sort { $a <=> $b } map { $_->{conns} } @r;
            ($_ => { s => $s[ int($#s / 2) ], conns => $c[ int($#c / 2) ] })
        } keys %runs };
    }

    $_->stop for values %lp;
    $front->stop;

    return { images => \@out };
}


# 10. a cluster of three nodes behind the page's balancer: upstream
# downloads of ten images pulled at once, keyed by digest and by
# repository; hits through the balancer against the node direct (wrk runs
# as in 1.: best of $ROUNDS)
sub bench_cluster {
    my $cimg = PT::Images::seed($reg, qw(fleet hello));
    my @refs = map { "fleet/svc-$_:1.0" } 0 .. 9;
    my %blobs = map { $_ => 1 }
                map { ($cimg->{$_}{config}, @{ $cimg->{$_}{layers} }) } @refs;
    my %out = (refs => scalar @refs, blobs => scalar keys %blobs);

    for my $key (qw(repository digest)) {
        my $c = PT::Cluster->new(nodes => 3, key => $key, config => {
            remotes => [ { name => 'origin', url => $reg->url } ],
            distributions => [ { name => 'cache', base_path => 'cache',
                                 remote => 'origin' } ],
        })->start;

        $reg->reset_requests;
        my @res = $c->pull_parallel(\@refs, "$work/cluster-$key");
        die "pulls through the cluster failed:\n"
            . join('', map { "$_->{ref}: $_->{out}" } grep { $_->{rc} } @res)
            if grep { $_->{rc} } @res;
        $out{$key}{gets} = scalar $reg->requests_matching('GET', qr{/blobs/});

        $out{hits} = cluster_hits($c, $cimg) if $key eq 'digest';
        $c->stop;
    }

    return \%out;
}


# hits of a 3 MiB blob (throughput) and of a small one (requests/s), through
# the balancer and straight from the node that has each
sub cluster_hits {
    my ($c, $cimg) = @_;

    my ($hello) = $c->pull_parallel([ 'library/hello:1.0' ],
                                    "$work/cluster-hello");
    die "pull of library/hello:1.0 through the cluster failed: $hello->{out}"
        if $hello->{rc};

    my ($large) = sort { $b->{size} <=> $a->{size} }
                  layers($cimg->{'library/hello:1.0'});
    my ($small) = sort { $a->{size} <=> $b->{size} }
                  layers($cimg->{'fleet/svc-0:1.0'});
    $large->{repo} = 'library/hello';
    $small->{repo} = 'fleet/svc-0';

    my %rate;
    for my $case ([ large => $large, '-t1', '-c2' ],
                  [ small => $small, '-t1', '-c16' ])
    {
        my ($name, $blob, @opts) = @$case;
        my $path = "/v2/cache/$blob->{repo}/blobs/$blob->{digest}";
        my $node = $c->node($c->owner($path) // 0);

        $rate{$name} = best_rates($c->balancer->base_url . $path,
                                  $node->base_url . $path, @opts);
        $rate{$name}{size_h} = $blob->{size_h};
    }

    return \%rate;
}


# 8. admin lists at growing store sizes: $LS_STAGES[-1] synthetic images in
# the registry (seed_images), pulled through the cache stage by stage; at
# each stage every list's first page, $LS_TRIES times on one connection,
# and the growth of the worker's peak memory over them. Then hits of a hot
# blob alone, with a client requesting lists at $LS_PACE a second, and
# with one requesting them as fast as they come
sub bench_lists {
    my $images = seed_images('scale/img', $LS_STAGES[-1]);
    my @blobs = seed_blobs('scale/hot', 1, 16 * $KiB);

    my $t = PT::Nginx->new(conf => plain_conf())->start;

    my $remote = PT::Pulp::create_remote($t, name => 'bench-lists',
                                         url => $reg->url);
    my $pt = PT::Pulp::create_dist($t, name => 'bench-lists',
                                   base_path => 'bench',
                                   remote => $remote->{pulp_href});
    fill($t, "/v2/bench/scale/hot/blobs/$blobs[0]");

    my ($worker) = @{ $t->worker_pids };
    my ($done, @stages) = (0);

    for my $stage (@LS_STAGES) {
        my $start = time;
        fill($t, map {
            my $base = "/v2/bench/scale/img$_->{n}";
            ("$base/manifests/latest", map { "$base/blobs/$_" } @{ $_->{blobs} })
        } @$images[ $done .. $stage - 1 ]);
        $done = $stage;
        my $fill_s = time - $start;

        push @stages, { images => $stage, fill_s => $fill_s,
                        blobs => $stage * ($LS_LAYERS + 1) + 1,
                        measure_lists($t, $worker, $pt,
                                      $images->[ int($stage / 2) ], $stage) };
    }

    my $hot = "http://127.0.0.1:" . $t->port
              . "/v2/bench/scale/hot/blobs/$blobs[0]";
    my @paths = map { "$API/$_?limit=100" }
        qw(content/container/blobs/ content/container/tags/
           content/container/manifests/ repositories/container/container/
           distributions/container/container/);

    my %best;
    for (1 .. $ROUNDS) {
        for my $run ([ alone => undef ], [ paced => 1 / $LS_PACE ],
                     [ flat => 0 ])
        {
            my ($k, $pace) = @$run;
            my ($i, $loop) = (0);
            $loop = get_loop($t->port, sub { $paths[ $i++ % @paths ] },
                             $pace || undef)
                if defined $pace;
            my $r = wrk($hot, '-t1', '-c16');
            if ($loop) {
                my @a = stop_loop($loop);
                die "8.: a list answered $_->{status}\n"
                    for grep { $_->{status} != 200 } @a;
                $r->{lists_s} = latency(@a)->{rps};
            }
            $best{$k} = $r if !$best{$k} || $r->{rps} > $best{$k}{rps};
        }
    }

    $t->stop;

    return { stages => \@stages, hits => \%best };
}


# the lists of 8. at one stage: (lists => [ { label, p50, max } ], hwm_kib,
# files); $img, an image in the middle, for the filters and one repository
sub measure_lists {
    my ($t, $worker, $pt, $img, $stage) = @_;

    my $name = "bench/scale/img$img->{n}";
    my $repo = $t->get("$API/repositories/container/container/?name=$name")
                 ->{json}{results}[0]
        or die "8.: no repository $name\n";

    my @first = (
        [ 'remotes' => 'remotes/container/pull-through/' ],
        [ 'pull-through distributions' => 'distributions/container/pull-through/' ],
        [ 'distributions (per image)' => 'distributions/container/container/' ],
        [ 'repositories' => 'repositories/container/container/' ],
        [ 'tasks' => 'tasks/' ],
        [ 'content: tags' => 'content/container/tags/' ],
        [ 'content: manifests' => 'content/container/manifests/' ],
        [ 'content: blobs' => 'content/container/blobs/' ],
    );

    my @lists;
    for my $limit (10, 100) {
        push @lists, map { [ "$_->[0], $limit" => "$API/$_->[1]?limit=$limit" ] }
                     @first;
    }

    push @lists,
        [ 'repositories ?name=' =>
              "$API/repositories/container/container/?name=$name" ],
        [ 'versions of a repository' => $repo->{versions_href} ],
        [ 'blobs of a version, 100' => "$API/content/container/blobs/"
              . "?limit=100&repository_version=$repo->{latest_version_href}" ],
        [ 'blobs ?digest=' =>
              "$API/content/container/blobs/?digest=$img->{blobs}[3]" ],
        [ 'blobs, 10, half way in' => "$API/content/container/blobs/"
              . "?limit=10&offset=" . int($stage * 5) ],
        [ 'tags ?name= (a walk)' =>
              "$API/content/container/tags/?name=latest&limit=10" ],
        [ 'a pull-through distribution' => $pt->{pulp_href} ];

    list_request($t, $_->[1]) for @lists;       # the pages in memory
    my $hwm = PT::Pull::vm_kib($worker, 'VmHWM');

    my @measured = map {
        my ($label, $url) = @$_;
        my @ms = sort { $a <=> $b } map { list_request($t, $url) } 1 .. $LS_TRIES;
        { label => $label, p50 => $ms[ int($#ms / 2) ], max => $ms[-1] }
    } @lists;

    my ($files) = store_usage($t);

    return (lists => \@measured, files => $files,
            hwm_kib => PT::Pull::vm_kib($worker, 'VmHWM') - $hwm);
}


# ms of one GET on a kept connection; dies unless it answers 200
my $LIST_SOCK;
sub list_request {
    my ($t, $path) = @_;

    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1:" . $t->port
              . "\r\n\r\n";

    for my $try (1, 2) {
        $LIST_SOCK //= _connect($t->port);
        my $start = time;
        my ($status, $close) = _get($LIST_SOCK, $req);
        my $ms = (time - $start) * 1000;
        if (!defined $status || $close) {
            close $LIST_SOCK;
            undef $LIST_SOCK;
            next unless defined $status;
        }
        die "8.: GET $path: $status\n" unless $status == 200;
        return $ms;
    }

    die "8.: GET $path: no answer\n";
}


# $n synthetic images, <prefix><i> (0 .. $n - 1), each a tag latest, an
# OCI manifest, a config and $LS_LAYERS layers of its own, a few hundred
# bytes each: written into the registry's storage the way it stored the
# first one pushed through its API (see seed_blobs), a GET through the API
# checks the last one. Returns [ { n, digest, blobs => [ config, layers ] } ]
sub seed_images {
    my ($prefix, $n) = @_;

    my $root = $reg->storage_dir . '/docker/registry/v2';
    my @images;

    for my $i (0 .. $n - 1) {
        my $repo = "$prefix$i";
        my (@desc, @blobs);

        for my $b (0 .. $LS_LAYERS) {
            my $data = $b ? "pt-bench layer $b of $repo\n" x 8
                          : qq({"architecture":"amd64","os":"linux",)
                            . qq("rootfs":{"type":"layers","diff_ids":[]},)
                            . qq("config":{"Labels":{"n":"$i"}}});
            my $digest = 'sha256:' . sha256_hex($data);
            push @blobs, [ $digest, $data ];
            push @desc, { mediaType => $b ? $PT::Images::MT{oci_layer}
                                          : $PT::Images::MT{oci_config},
                          digest => $digest, size => length $data };
        }

        my $manifest = JSON::PP->new->canonical->encode({
            schemaVersion => 2, mediaType => $PT::Images::MT{oci_manifest},
            config => $desc[0], layers => [ @desc[ 1 .. $#desc ] ] });
        my $digest = 'sha256:' . sha256_hex($manifest);

        if ($i == 0) {
            push_blob($repo, @$_) for @blobs;
            my $r = $reg->request('PUT', "/v2/$repo/manifests/latest",
                content => $manifest,
                headers => { 'Content-Type' => $PT::Images::MT{oci_manifest} });
            die "docker-registry: PUT of a manifest: $r->{status}\n"
                unless $r->{status} == 201;
        } else {
            write_blob($root, $repo, '_layers', @$_) for @blobs;
            write_blob($root, $repo, '_manifests/revisions', $digest,
                       $manifest);
            my $hex = substr $digest, 7;
            my $tag = "$root/repositories/$repo/_manifests/tags/latest";
            make_path("$tag/current", "$tag/index/sha256/$hex");
            spew("$tag/current/link", $digest);
            spew("$tag/index/sha256/$hex/link", $digest);
        }

        my $hex = substr $digest, 7;
        -f "$root/repositories/$repo/_manifests/tags/latest/current/link"
            && -f "$root/repositories/$repo/_manifests/revisions/sha256/$hex/link"
            or die "docker-registry did not store a pushed manifest where "
                   . "seed_images in t/bench/bench.pl writes them\n"
            if $i == 0;

        push @images, { n => $i, digest => $digest,
                        blobs => [ map { $_->[0] } @blobs ] };
    }

    my $last = "$prefix" . ($n - 1);
    my $r = $reg->request('GET', "/v2/$last/manifests/latest",
                          headers => { Accept => $ACCEPT });
    die "docker-registry: GET of a manifest written into its storage: "
        . "$r->{status}\n"
        unless $r->{status} == 200
            && sha256_hex($r->{content}) eq substr($images[-1]{digest}, 7);

    return \@images;
}


# a blob's data in the registry's storage and its link in $repo's $dir
sub write_blob {
    my ($root, $repo, $dir, $digest, $data) = @_;

    my $hex = substr $digest, 7;
    my $blob = "$root/blobs/sha256/" . substr($hex, 0, 2) . "/$hex";
    my $link = "$root/repositories/$repo/$dir/sha256/$hex";

    make_path($blob, $link);
    spew("$blob/data", $data) unless -f "$blob/data";
    spew("$link/link", $digest);
}


# one worker, the registry and the admin API, no access log
sub plain_conf {
    return <<'EOF';
worker_processes 1;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    pullthrough_store %%STORE%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ { pullthrough_registry; }
        location /pulp/api/v3/ { pullthrough_admin; }
    }
}
EOF
}


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
    die "wrk $url: answers other than 2xx or 3xx: $out\n"
        if $out =~ /Non-2xx or 3xx responses:\s+(\d+)/ && $1 > 0;

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


# best of $ROUNDS wrk runs of each of two URLs: { module => {...},
# stock => {...} } (see wrk). Rounds alternate between the two, so that a
# noisy moment of the machine does not fall on one side only
sub best_rates {
    my ($module, $stock, @opts) = @_;
    my %best;

    for (1 .. $ROUNDS) {
        for my $which ([ module => $module ], [ stock => $stock ]) {
            my ($label, $url) = @$which;
            my $r = wrk($url, @opts);
            $best{$label} = $r
                if !$best{$label} || $r->{rps} > $best{$label}{rps};
        }
    }

    return \%best;
}


# the URL of stock nginx (the second port) for the store's file of $digest
sub stock_url {
    my ($t, $digest) = @_;
    my ($alg, $hex) = split /:/, $digest;
    return "http://127.0.0.1:" . $t->port(2)
           . "/blobs/$alg/" . substr($hex, 0, 2) . "/$hex";
}


# $n distinct blobs of $size bytes in the registry's repository $repo;
# returns their digests. The first is pushed through the registry's API
# (POST and PUT of an upload); the others are written into its storage
# the way it stored that one (the filesystem driver's layout: the blob's
# data, a link in the repository): about a second for 2000 blobs, where
# the API takes about 7 ms a blob on this machine. A HEAD through the API
# checks the last one.
sub seed_blobs {
    my ($repo, $n, $size) = @_;

    my $root = $reg->storage_dir . '/docker/registry/v2';
    my @digests;

    for my $i (1 .. $n) {
        my $seed = "pt-bench $repo $i\n";
        my $data = substr($seed x (int($size / length $seed) + 1), 0, $size);
        my $hex = sha256_hex($data);
        my $blob = "$root/blobs/sha256/" . substr($hex, 0, 2) . "/$hex";
        my $link = "$root/repositories/$repo/_layers/sha256/$hex";

        if ($i == 1) {
            push_blob($repo, "sha256:$hex", $data);
            -f "$blob/data" && slurp("$link/link") eq "sha256:$hex"
                or die "docker-registry did not store a pushed blob as "
                       . "$blob/data and $link/link: seed_blobs in "
                       . "t/bench/bench.pl needs the layout it uses\n";
        } else {
            make_path($blob, $link);
            spew("$blob/data", $data);
            spew("$link/link", "sha256:$hex");
        }

        push @digests, "sha256:$hex";
    }

    my $r = $reg->head("/v2/$repo/blobs/$digests[-1]");
    die "docker-registry: HEAD of a blob written into its storage: "
        . "$r->{status}\n"
        unless $r->{status} == 200
            && ($r->{headers}{'content-length'} // -1) == $size;

    return @digests;
}


# a blob pushed through the registry's API: POST of an upload, PUT of the
# bytes with the digest
sub push_blob {
    my ($repo, $digest, $data) = @_;

    my $r = $reg->request('POST', "/v2/$repo/blobs/uploads/");
    my $loc = $r->{headers}{location};
    die "docker-registry: POST of an upload: $r->{status}\n"
        unless $r->{status} == 202 && $loc;

    $loc .= ($loc =~ /\?/ ? '&' : '?') . "digest=$digest";
    $r = $reg->request('PUT', $loc, content => $data,
        headers => { 'Content-Type' => 'application/octet-stream' });
    die "docker-registry: PUT of a blob: $r->{status} $r->{content}\n"
        unless $r->{status} == 201;
}


# GETs of @paths through the cache, 8 at a time (curl); dies unless every
# answer is a 200
sub fill {
    my ($t, @paths) = @_;

    my $cfg = "$work/fill.cfg";
    spew($cfg, join '', map {
        "url = \"" . $t->base_url . "$_\"\noutput = \"/dev/null\"\n"
    } @paths);

    my $out = run_output('curl', '-s', '--no-progress-meter', '-Z',
                         '--parallel-max', '8', '-w', '%{http_code}\n',
                         '-K', $cfg);

    my $ok = grep { $_ eq '200' } split /\n/, $out;
    die "pulls through the cache: $ok of " . @paths . " answered 200: "
        . substr($out, 0, 500) . "\n"
        unless $ok == @paths;
}


# (files, bytes) under STORE/blobs
sub store_usage {
    my ($t) = @_;
    my ($files, $bytes) = (0, 0);

    my @dirs = ($t->store . '/blobs');
    while (defined(my $d = shift @dirs)) {
        opendir my $dh, $d or next;
        for my $e (readdir $dh) {
            next if $e eq '.' || $e eq '..';
            my $p = "$d/$e";
            if (-d $p) {
                push @dirs, $p;
            } elsif (-f _) {
                $files++;
                $bytes += -s _;
            }
        }
        closedir $dh;
    }

    return ($files, $bytes);
}


# GETs in a loop in a child process, one at a time on a keep-alive
# connection (a new one when nginx closes it), of the paths $next returns,
# until stop_loop; one every $pace seconds if given (else each right after
# the previous one); each answer's start time, milliseconds and status go
# to a file of the child's
sub get_loop {
    my ($port, $next, $pace) = @_;

    my $n = ++$LOOPS;
    my $h = { log => "$work/loop-$n.log", stop => "$work/loop-$n.stop" };

    $h->{pid} = fork // die "fork: $!";

    if ($h->{pid} == 0) {
        my $ok = eval { _get_loop($port, $next, $pace, $h); 1 };
        print STDERR "get_loop: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);      # no END blocks: they stop nginx
    }

    return $h;
}

sub _get_loop {
    my ($port, $next, $pace, $h) = @_;

    local $SIG{PIPE} = 'IGNORE';
    open my $log, '>', $h->{log} or die "$h->{log}: $!";

    my $s;
    my $due = time;
    for (my $i = 0; ; $i++) {
        last if $i % 10 == 0 && -e $h->{stop};

        if ($pace) {
            $due += $pace;
            my $wait = $due - time;
            sleep $wait if $wait > 0;
        }

        my $path = $next->();
        my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n\r\n";
        my ($start, $status, $close);

        for my $try (1, 2) {
            $s //= _connect($port);
            $start = time;
            ($status, $close) = _get($s, $req);
            last if defined $status;
            close $s;                   # closed meanwhile: a new one
            undef $s;
        }
        die "GET $path: no answer\n" unless defined $status;

        printf $log "%.6f %.3f %d\n", $start, (time - $start) * 1000, $status;

        if ($close) {
            close $s;
            undef $s;
        }
    }

    close $log or die "$h->{log}: $!";
}

sub _connect {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp')
        or die "connect 127.0.0.1:$port: $!\n";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $s;
    return $s;
}

# one request on $s: (status, whether the connection closes after it),
# or () when the connection was closed before an answer
sub _get {
    my ($s, $req) = @_;

    syswrite($s, $req) == length $req or return;

    my $buf = '';
    my $end;
    while (($end = index($buf, "\r\n\r\n")) < 0) {
        sysread($s, $buf, 65536, length $buf) or return;
    }

    my $head = substr($buf, 0, $end);
    my ($status) = $head =~ m{^HTTP/1\.\d (\d{3})} or return;
    my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
    my $close = $head =~ /^Connection:\s*close/mi || !defined $len;

    my $body = length($buf) - $end - 4;
    while (!defined $len || $body < $len) {
        my $n = sysread($s, $buf, 65536) or last;
        $body += $n;
    }
    return if defined $len && $body < $len;

    return ($status, $close);
}

# stops a get_loop: its answers ({ start, ms, status }, ...)
sub stop_loop {
    my ($h) = @_;

    spew($h->{stop}, '');
    waitpid($h->{pid}, 0);
    die "get_loop failed (exit status " . ($? >> 8) . ")\n" if $?;

    return map {
        my ($start, $ms, $status) = split;
        { start => $start, ms => $ms, status => $status }
    } split /\n/, slurp($h->{log});
}

# { rps, p50, p99, max } of answers
sub latency {
    my (@a) = @_;

    return { rps => 0, p50 => 0, p99 => 0, max => 0 } unless @a;

    my @ms = sort { $a <=> $b } map { $_->{ms} } @a;
    my $span = $a[-1]{start} - $a[0]{start};

    return { rps => $span > 0 ? @a / $span : 0,
             p50 => $ms[ int($#ms * 0.50) ], p99 => $ms[ int($#ms * 0.99) ],
             max => $ms[-1] };
}


# SIGSTOP to nginx's cache manager process, caught while it waits in
# epoll_wait for its next turn (not in the middle of a batch, holding a
# lock or a transaction the workers would wait for); returns its pid
sub stop_manager {
    my ($t) = @_;

    my ($pid) = grep {
        ((slurp("/proc/$_/stat") =~ /\)\s+\S+\s+(\d+)/)[0] // 0) == $t->{pid}
            && slurp("/proc/$_/cmdline") =~ /cache manager process/
    } grep { /^\d+$/ } map { s{.*/}{}r } glob '/proc/[0-9]*';
    die "nginx $t->{pid} has no cache manager process\n" unless $pid;

    my $waits = $EPOLL_WAIT{ (POSIX::uname())[4] }
        or die "stop_manager: the numbers of epoll_wait on this machine?\n";

    for (1 .. 200) {
        kill 'STOP', $pid;
        wait_for(sub { slurp("/proc/$pid/stat") =~ /\)\s+T\s/ }, 5)
            or die "the cache manager $pid did not stop\n";

        my ($nr) = split ' ', slurp("/proc/$pid/syscall");
        return $pid if defined $nr && grep { $_ eq $nr } @$waits;

        kill 'CONT', $pid;
        sleep 0.03;
    }

    die "the cache manager $pid was never caught waiting\n";
}

