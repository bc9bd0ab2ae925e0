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
#      certificate: here a remote with a ca_cert).
#
# Load comes from wrk on loopback; each figure is the best of a few short
# runs so that one noisy second does not decide it.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';

use File::Temp qw(tempdir);
use Time::HiRes qw(time);

use Test::More;     # PT::Nginx reports through it; bench prints its own

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Certs;

my $DURATION = $ENV{BENCH_SECONDS} || 4;
my $ROUNDS = $ENV{BENCH_ROUNDS} || 3;

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
        location /v2/ { pullthrough_registry; }
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

# 1. hits against stock nginx

my ($large) = sort { $b->{size} <=> $a->{size} } layers($big);
my ($small) = sort { $a->{size} <=> $b->{size} } layers($hello);

my %rate;

for my $case ([ large => $large, '-t1', '-c2' ], [ small => $small, '-t1', '-c16' ]) {
    my ($name, $blob, @opts) = @$case;
    my ($alg, $hex) = split /:/, $blob->{digest};

    my $module = "http://127.0.0.1:" . $t->port
                 . "/v2/bench/library/" . ($name eq 'large' ? 'big' : 'hello')
                 . "/blobs/$blob->{digest}";
    my $stock = "http://127.0.0.1:" . $t->port(2)
                . "/blobs/$alg/" . substr($hex, 0, 2) . "/$hex";

    for my $which ([ module => $module ], [ stock => $stock ]) {
        my ($label, $url) = @$which;
        my $best;

        for (1 .. $ROUNDS) {
            my $r = wrk($url, @opts);
            $best = $r if !$best || $r->{rps} > $best->{rps};
        }

        $rate{$name}{$label} = $best;
    }
}

$t->stop;
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

printf "\n%-34s %14s %14s %8s\n", '', 'cache', 'upstream', 'ratio';
printf "%-34s %12.2f s %12.2f s %8.2f\n",
       "cold pull of library/big:1.0", $cold, $direct, $cold / $direct;
printf "%-34s %12.2f s %12.2f s %8.2f\n",
       "cold pull, libcurl transport", $cold_curl, $direct,
       $cold_curl / $direct;
printf "%-34s %12.2f s %14s\n", "warm pull (all hits)", $warm, '';

printf "\ntargets: hit ratios >= 0.90, cold pull ratio <= 1.20\n";

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

    my $out = `wrk @opts -d${DURATION}s '$url' 2>&1`;

    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my ($tps, $unit) = $out =~ /Transfer\/sec:\s+([\d.]+)(\w+)/;
    die "wrk failed: $out\n" unless defined $rps && defined $tps;

    my %mult = (B => 1, KB => 1024, MB => 1024 ** 2, GB => 1024 ** 3);

    return { rps => $rps, bps => $tps * ($mult{$unit} || 1) };
}
