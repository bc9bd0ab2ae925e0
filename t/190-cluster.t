#!/usr/bin/perl

# A cluster of three caches behind an nginx balancer, as
# docs/several-caches.md lays it out (the balancer's configuration is the
# page's own): every node has its own store and the same pullthrough_config
# file; the balancer hashes blobs by digest and the rest by repository.
#
# Ten images sharing layers are pulled at once through the balancer: each
# distinct blob is downloaded from the upstream once for the whole cluster,
# and pulling again downloads nothing. Registry headers and ranges pass
# through, blobs stream through the balancer without being kept there, and
# the admin API is each node's. Then pulls run while a node is killed
# (SIGKILL to its master and workers) with a blob under way: requests not
# yet answered go to another node, the clients whose blob was cut run
# their pull again, every pull completes and the cluster keeps serving.
# The keys of the other nodes never move; started again, the node gets its
# own keys back. Last, with the upstream down, a miss is the client's 502
# while cached images are still served: no node is taken out for it.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::FakeUpstream;
use PT::Cluster;
use PT::Pull;
use PT::Util qw(need_tools slurp);

need_tools(qw(docker-registry skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-190-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});
my $t0 = time;

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, 'fleet');
my @refs = map { "fleet/svc-$_:1.0" } 0 .. 9;

# every blob of the ten images once: digest => { repo, size }
my %blob;
for my $ref (@refs) {
    my $i = $img->{$ref};
    my @d = ($i->{config}, @{ $i->{layers} });
    my @s = ($i->{config_size}, @{ $i->{layer_sizes} });
    $blob{ $d[$_] } //= { repo => $i->{repo}, size => $s[$_] } for 0 .. $#d;
}

# the image whose blobs are held by the fake upstream: hello's first
# layer, shared by its two tags, stops after 2 KiB until the test lets it
my $H = PT::Images::build('hello');
my $held = $H->{layers}{'hello-a'}{digest};
my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$H->{dir}/blobs" ],
    tags => { map { ("library/hello:$_" => $H->{refs}{"hello-$_"}{digest}) }
              qw(1.0 1.1) },
    hook => sub {
        my ($req, $f) = @_;
        return unless $req->{method} eq 'GET'
                      && $req->{path} =~ m{/blobs/\Q$held\E$};
        return [ 200, [ 'Content-Type' => 'application/octet-stream' ],
                 { file => $f->blob_file($held), pause_at => 2048,
                   wait_flag => 'go' } ];
    },
)->start;

# the balancer's sndbuf as a far client's window: a slow client's data
# stays with nginx, not in the kernel; origin without retries: the
# upstream's outage at the end answers at once
my $c = PT::Cluster->new(nodes => 3, listen => 'sndbuf=32k', config => {
    remotes => [ { name => 'origin', url => $reg->url, max_retries => 0 },
                 { name => 'held', url => $fake->url } ],
    distributions => [
        { name => 'cache', base_path => 'cache', remote => 'origin' },
        { name => 'held', base_path => 'held', remote => 'held' },
    ],
})->start;
note(sprintf 'upstream seeded and cluster started in %.1f s', time - $t0);

my $lb = $c->balancer;
my %port = map { $c->node($_)->port => $_ } 0 .. 2;

sub blob_path { my ($d) = @_; "/v2/cache/$blob{$d}{repo}/blobs/$d" }

# who answers each key now: blobs by digest, repositories by a manifest
sub owners {
    my %o;
    $o{$_} = $c->owner(blob_path($_)) for keys %blob;
    $o{$_} = $c->owner("/v2/cache/$_/manifests/1.0")
        for map { $img->{$_}{repo} } @refs;
    return \%o;
}

sub upstream_gets {
    my %n;
    $n{ ($_->{path} =~ m{/blobs/(.+)$})[0] }++
        for $reg->requests_matching('GET', qr{/blobs/});
    return \%n;
}


# the configuration: the same file on every node, the admin API per node

is_deeply([ map { join ',', sort map { $_->{name} }
                  @{ list_all($c->node($_), $DISTS) } } 0 .. 2 ],
          [ ('cache,held') x 3 ],
          'every node has the distributions of the one pullthrough_config file');
my $r = $lb->get("$API/remotes/container/pull-through/");
is($r->{status}, 404, 'the admin API is not reached through the balancer');
like($r->{json}{detail} // '', qr/per node/, '... which says to ask a node');
$r = $lb->get('/v2/');
is($r->{status}, 200, 'GET /v2/ through the balancer: 200');
is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
   '... with the API version');


# (a) ten images at once: one upstream download per distinct blob

$reg->reset_requests;
my @res = $c->pull_parallel(\@refs, "$tmp/a");
is_deeply([ map { $_->{ref} } grep { $_->{rc} } @res ], [],
          'ten images pulled at once through the balancer')
    or diag(join "\n", map { "$_->{ref}: $_->{out}" } grep { $_->{rc} } @res);
is_deeply([ map { missing_blobs($_) } @res ], [], '... each with all its blobs, verified');

my $gets = upstream_gets();
is_deeply([ sort keys %$gets ], [ sort keys %blob ],
          'every distinct blob was downloaded from the upstream ('
          . scalar(keys %blob) . ' blobs for ' . 4 * @refs . ' in the images)');
is_deeply([ grep { $gets->{$_} != 1 } sort keys %$gets ], [],
          '... once for the whole cluster')
    or diag(explain $gets);
my %served;
$served{ $port{ ($_->{upstream} =~ /:(\d+)$/)[0] } }++
    for grep { $_->{uri} =~ m{/blobs/} && $_->{status} == 200 } $c->balancer_log;
is(scalar(keys %served), 3, '... the blobs came from all three nodes')
    or diag(explain \%served);
is(scalar($reg->requests_matching('GET', qr{/manifests/})), 10,
   '... and each manifest once');

$reg->reset_requests;
@res = $c->pull_parallel(\@refs, "$tmp/again");
is_deeply([ map { $_->{ref} } grep { $_->{rc} } @res ], [], 'pulled again');
is(scalar($reg->requests_matching('GET', qr{/blobs/})), 0,
   '... without an upstream download');

my $before = owners();
my %count;
$count{ $_ // 'none' }++ for values %$before;
is(scalar(grep { defined } values %$before), scalar(keys %$before),
   'every key (' . scalar(keys %$before) . ' blobs and repositories) has a node')
    or diag(explain $before);
is(scalar(keys %count), 3, '... and every node has some') or diag(explain \%count);


# headers and ranges pass through

my $i0 = $img->{'fleet/svc-0:1.0'};
$r = $lb->get('/v2/cache/fleet/svc-0/manifests/1.0', headers => { Accept => $ACCEPT });
is($r->{headers}{'docker-content-digest'}, $i0->{digest},
   'a manifest through the balancer: its Docker-Content-Digest');
is($r->{headers}{'content-type'}, $i0->{media_type}, '... its media type');
is($r->{headers}{etag}, qq("$i0->{digest}"), '... its ETag');

my $os = $i0->{layers}[0];
my $os_bytes = layer_bytes($os);
$r = $lb->head(blob_path($os));
is($r->{status}, 200, 'HEAD of a blob through the balancer: 200');
is($r->{headers}{'content-length'}, length $os_bytes, '... its length');
is($r->{headers}{'docker-content-digest'}, $os, '... its digest');
$r = $lb->get(blob_path($os), headers => { Range => 'bytes=1000-1999' });
is($r->{status}, 206, 'a range of a blob through the balancer: 206');
is($r->{headers}{'content-range'}, 'bytes 1000-1999/' . length $os_bytes,
   '... its Content-Range');
ok($r->{content} eq substr($os_bytes, 1000, 1000), '... and its bytes');


# (b) a node killed while pulls run: the node of a blob held mid-way

my $k = $c->owner("/v2/held/library/hello/blobs/$held");
ok(defined $k, "the held blob is node" . ($k // '?') . "'s");
$k //= 0;
my $kport = $c->node($k)->port;
my @held = map { "library/hello:$_" } qw(1.0 1.1 1.0 1.1 1.0 1.1);

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    # never the END blocks of the test (they stop its servers)
    eval {
        my @res = $c->pull_parallel(\@held, "$tmp/b", base => 'held', attempts => 2);
        PT::Util::spew("$tmp/b.json", JSON::PP->new->encode(\@res));
    };
    POSIX::_exit(0);
}

ok(wait_for(sub { grep { $_->{method} eq 'GET' && $_->{path} =~ /\Q$held\E/ }
                  $fake->requests }, 30),
   'pulls under way: the held blob is being fetched');
$c->kill_node($k);
$fake->set_flag('go', 1);

# while the pulls finish: a range of a blob of the dead node, fetched by
# another node (a client resuming a cut blob asks so)
SKIP: {
    my ($lost) = grep { $before->{$_} == $k && $blob{$_}{size} > 4096 }
                 sort keys %blob;
    skip "node$k has no layer of the ten images", 4 unless $lost;
    my $bytes = layer_bytes($lost);
    $r = $lb->get(blob_path($lost), headers => { Range => 'bytes=1000-' });
    is($r->{status}, 206, 'a range of a blob of the dead node: 206');
    is($r->{headers}{'content-range'},
       'bytes 1000-' . (length($bytes) - 1) . '/' . length $bytes,
       '... its Content-Range');
    ok($r->{content} eq substr($bytes, 1000), '... its bytes');
    isnt($r->{headers}{'x-cache-node'}, "node$k", '... from another node');
}

ok(wait_for(sub { waitpid($pid, POSIX::WNOHANG()) == $pid }, 150), 'the pulls ended');
my $b = eval { JSON::PP->new->decode(slurp("$tmp/b.json")) } || [];
is_deeply([ map { $_->{rc} } @$b ], [ (0) x @held ],
          '... every one of them complete (a pull cut mid-blob run again)')
    or diag(join "\n", map { "$_->{ref}: $_->{out}" } @$b);
note(scalar(grep { $_->{attempts} > 1 } @$b) . ' of ' . @held . ' pulls were run again');
my @log = $c->balancer_log;
ok(scalar(grep { $_->{uri} =~ /\Q$held\E/ && $_->{upstream} eq "127.0.0.1:$kport"
                 && $_->{bytes} < $H->{layers}{'hello-a'}{size} } @log),
   '... a client of the dead node had part of the held blob');
ok(scalar(grep { $_->{upstream} =~ /^127\.0\.0\.1:$kport, / && $_->{status} =~ /^20[06]$/ } @log),
   '... and a request sent to the dead node was answered by another one');

my $after = owners();
is_deeply([ grep { $before->{$_} != $k && ($after->{$_} // -1) != $before->{$_} }
            sort keys %$before ], [],
          "node$k dead: the keys of the other nodes stay where they were");
is_deeply([ grep { !defined $after->{$_} || $after->{$_} == $k }
            grep { $before->{$_} == $k } sort keys %$before ], [],
          "... node$k\'s keys go to the others");

@res = $c->pull_parallel(\@refs, "$tmp/down");
is_deeply([ map { $_->{ref} } grep { $_->{rc} } @res ], [],
          '... which serve all ten images');


# (c) the node started again: its keys come back, no other moves

$c->start_node($k);
my $back;
ok(wait_for(sub { $back = owners();
                  !grep { ($back->{$_} // -1) != $before->{$_} } keys %$before }, 40),
   "node$k started again: every key is where it was before");
is_deeply([ grep { ($back->{$_} // -1) != $before->{$_} } sort keys %$before ], [],
          "... node$k\'s keys back, the others' unmoved");
$reg->reset_requests;
@res = $c->pull_parallel(\@refs, "$tmp/back");
is_deeply([ map { $_->{ref} } grep { $_->{rc} } @res ], [], '... the ten images pulled');
is(scalar($reg->requests_matching('GET', qr{/blobs/})), 0,
   "... without a download: node$k kept its store");


# blobs stream through the balancer: a slow client of 3 MiB, nothing kept

{
    my $big = $H->{layers}{'hello-b'};
    my $w = $lb->worker_pids->[0];
    my $hwm = vm_kib($w, 'VmHWM');
    my $s = stream_get($lb, "/v2/held/library/hello/blobs/$big->{digest}",
                       rcvbuf => 16384, chunk => 16384, delay => 0.002,
                       timeout => 60);
    ok($s->{complete} && $s->{sha256} eq $big->{digest},
       'a slow client gets a 3 MiB blob through the balancer');
    SKIP: {
        my $why = PT::Pull::memory_unmeasurable();
        skip $why, 1 if $why;
        cmp_ok(vm_kib($w, 'VmHWM') - $hwm, '<', 1024,
               '... the balancer\'s memory grows by less than 1 MiB');
    }
    unlike($lb->error_log, qr/buffered to a temporary file/,
           '... and nothing is written to a temporary file');
}


# the upstream down: a miss is the client's error, cached images are served

$reg->stop;
$r = $lb->get('/v2/cache/fleet/none/manifests/1.0', headers => { Accept => $ACCEPT });
is_oci_error($r, 502, 'UNAVAILABLE', 'the upstream down: a miss is 502 UNAVAILABLE');
my @st;
for my $ref (@refs) {
    my $i = $img->{$ref};
    push @st, $lb->get("/v2/cache/$i->{repo}/manifests/1.0",
                       headers => { Accept => $ACCEPT })->{status};
    push @st, $lb->get("/v2/cache/$i->{repo}/blobs/$_")->{status}
        for $i->{config}, @{ $i->{layers} };
}
is_deeply(\@st, [ (200) x (5 * @refs) ], '... the ten images are served still');
unlike($lb->error_log, qr/no live upstreams/, '... no node was taken out for it');

$c->stop;
$fake->stop;
note(sprintf 'done in %.1f s', time - $t0);

done_testing;


# the bytes of a layer of the test images, from their layouts
sub layer_bytes {
    my ($d) = @_;
    for my $set (qw(fleet hello)) {
        my $f = PT::Images::build($set)->{dir} . '/blobs/sha256/' . substr($d, 7);
        return slurp($f) if -f $f;
    }
    die "no layer $d\n";
}

# the blobs of a pulled image that its skopeo dir: lacks or has wrong
sub missing_blobs {
    my ($res) = @_;
    my $i = $img->{ $res->{ref} };
    return map { "$res->{ref} $_" }
           grep { my $f = "$res->{dir}/" . substr($_, 7);
                  !-f $f || file_digest($f) ne $_ }
           $i->{config}, @{ $i->{layers} };
}
