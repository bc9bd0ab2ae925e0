#!/usr/bin/perl

# The store under a size cap: pullthrough_store ... max_size=4300k holds two
# of the three test images (3, 2 and 1 MiB). Pulling all three removes the
# least recently pulled one's files, in the cache manager; pulling it again
# fetches it from the upstream, while the others are still hits. A read in
# progress when its file is evicted ends with every byte right. A pinned
# distribution (retain) keeps its content, and the next oldest goes
# instead.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $CAP = 4300 * 1024;

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app multi));

# the three images: their manifest, then config and layers
my %IMAGES = (
    hello => { repo => 'library/hello', tag => '1.0', info => $img->{'library/hello:1.0'} },
    app   => { repo => 'team/app',      tag => '1.0', info => $img->{'team/app:1.0'} },
    multi => { repo => 'library/multi', tag => '1.0',
               info => $img->{'library/multi:1.0'}{children}{'linux/amd64'},
               by_digest => 1 },
);

sub blobs_of { my ($i) = @_; return ($IMAGES{$i}{info}{config}, @{ $IMAGES{$i}{info}{layers} }) }

# a pull as a client makes it: the manifest, then every blob, each checked;
# returns the cache statuses
sub pull {
    my ($t, $i) = @_;
    my $im = $IMAGES{$i};
    my $ref = $im->{by_digest} ? $im->{info}{digest} : $im->{tag};
    my $r = logged_request($t, 'GET', "/v2/cache/$im->{repo}/manifests/$ref",
                           headers => { Accept => $ACCEPT });
    die "manifest of $i: $r->{status}\n" unless $r->{status} == 200;
    my @status = ($r->{cache});
    for my $d (blobs_of($i)) {
        my $b = logged_request($t, 'GET', "/v2/cache/$im->{repo}/blobs/$d");
        die "blob $d of $i: $b->{status}\n"
            unless $b->{status} == 200 && sha256_digest($b->{content}) eq $d;
        push @status, $b->{cache};
    }
    return \@status;
}

sub present { my ($t, $i) = @_; return scalar grep { -f blob_file($t, $_) } blobs_of($i) }

sub store_bytes {
    my ($t) = @_;
    my $n = 0;
    $n += -s ($t->store . "/blobs/$_") for store_files($t);
    return $n;
}

sub upstream_blob_gets {
    my ($i) = @_;
    my %mine = map { $_ => 1 } blobs_of($i);
    return scalar grep { $_->{method} eq 'GET' && $_->{path} =~ m{/blobs/(\S+)$} && $mine{$1} }
                  $reg->requests;
}

sub image_dist {
    my ($t, $i) = @_;
    my ($d) = grep { $_->{base_path} eq "cache/$IMAGES{$i}{repo}" }
              @{ list_all($t, "$API/distributions/container/container/") };
    return $d;
}


# 1. least recently used goes first

my $t = PT::Nginx->new(conf => cache_conf(store_args => " max_size=4300k",
                                          listen => 'sndbuf=64k'));
$t->start;
setup_cache($t, $reg->url);

is_deeply(pull($t, 'hello'), [ ('MISS') x 4 ], 'hello:1.0 pulled (3 MiB), a miss');
ok(wait_for(sub { store_bytes($t) > 3 * 1024 * 1024 }, 5), '... and stored');

# a slow reader of hello's big layer, still reading when it is evicted
my $big = $IMAGES{hello}{info}{layers}[1];
my $started = $t->dir . '/slow-started';
my $slow = bg_stream_get($t, "/v2/cache/library/hello/blobs/$big", started => $started,
                         rcvbuf => 32 * 1024, chunk => 32 * 1024, delay => 0.05);
# its read is the last access of hello's layer: before team/app is pulled
wait_for(sub { -e $started }, 10) or die "the slow reader did not start\n";

is_deeply(pull($t, 'app'), [ ('MISS') x 4 ], 'team/app:1.0 pulled (2 MiB): over the cap');
ok(wait_for(sub { present($t, 'hello') == 0 }, 15),
   '... the files of hello, the least recently used, are evicted')
    or diag(join ' ', store_files($t));
ok(waitpid($slow->{pid}, POSIX::WNOHANG()) == 0,
   '... while a client was still reading its big layer');
is(present($t, 'app'), 3, '... the files of team/app stay');

my $res = bg_result($slow);
ok($res->{complete} && $res->{sha256} eq $big,
   '... and that client got every byte of the evicted layer, right')
    or diag(explain $res);

is_deeply(pull($t, 'multi'), [ ('MISS') x 4 ], 'library/multi (amd64, 1 MiB) pulled');
ok(wait_for(sub { store_bytes($t) <= $CAP }, 15), '... the store is within max_size')
    or diag(store_bytes($t));
is(present($t, 'app') + present($t, 'multi'), 6, '... with team/app and library/multi in it');

is_deeply(pull($t, 'app'), [ ('HIT') x 4 ], 'team/app again: hits');
is_deeply(pull($t, 'multi'), [ ('HIT') x 4 ], 'library/multi again: hits');

$reg->reset_requests;
my $again = pull($t, 'hello');
is_deeply([ @$again[1..3] ], [ ('MISS') x 3 ], 'hello:1.0 again: its blobs are fetched again');
is(upstream_blob_gets('hello'), 3, '... one upstream GET for each of them');
ok(wait_for(sub { store_bytes($t) <= $CAP && present($t, 'hello') == 3 }, 15),
   '... then the store is back within max_size, hello kept (the most recent)')
    or diag(store_bytes($t));
is(present($t, 'app'), 0, '... team/app, now the least recently used, evicted');
is_deeply(pull($t, 'multi'), [ ('HIT') x 4 ], '... library/multi, read after it, still hits');

my $repo = (grep { $_->{name} eq 'cache/team/app' }
            @{ list_all($t, "$API/repositories/container/container/") })[0];
ok($repo && $repo->{latest_version_href} =~ m{/versions/1/$},
   'the evicted repository keeps its version (on-demand content, as Pulp)');
my $tags = $t->get('/v2/cache/team/app/tags/list')->{json};
is_deeply($tags->{tags}, [ '1.0' ], '... and its tag');
my $units = list_all($t, "$API/content/container/blobs/?repository_version=$repo->{latest_version_href}");
is_deeply([ sort map { $_->{digest} } @$units ], [ sort(blobs_of('app')) ],
          '... and its blobs, listed');
is_deeply([ map { $_->{cached} } @$units ], [ (JSON::PP::false) x 3 ],
          '... as not cached ("cached": false)');
$units = list_all($t, "$API/content/container/blobs/?digest=$IMAGES{hello}{info}{layers}[1]");
ok(@$units && $units->[0]{cached}, 'a blob of hello, fetched again: "cached": true');

$t->stop;


# 2. a pinned distribution is never evicted

$t = PT::Nginx->new(conf => cache_conf(store_args => " max_size=4300k"));
$t->start;
setup_cache($t, $reg->url);

pull($t, 'hello');
my $d = image_dist($t, 'hello');
my $r = $t->patch($d->{pulp_href}, { retain => JSON::PP::true });
is($r->{status}, 202, 'the image distribution of hello pinned (PATCH retain: true)');
ok(task_of($t, $r), '... its task completed');
is($t->get($d->{pulp_href})->{json}{retain}, JSON::PP::true, '... retain shows');
is($t->patch($d->{pulp_href}, { base_path => 'elsewhere' })->{status}, 202,
   'a PATCH of a field pulls set is accepted');
is($t->get($d->{pulp_href})->{json}{base_path}, 'cache/library/hello', '... and ignored');
my $whole = $t->get($d->{pulp_href})->{json};
$whole->{description} = 'kept';
$r = $t->patch($d->{pulp_href}, $whole);
is($r->{status}, 202, 'GET, modify, PATCH back the whole object: accepted')
    or diag(explain $r->{json});
is($t->get($d->{pulp_href})->{json}{description}, 'kept', '... the description changed');

pull($t, 'app');
pull($t, 'multi');
ok(wait_for(sub { store_bytes($t) <= $CAP }, 15), 'over the cap, the store goes back within it')
    or diag(store_bytes($t));
is(present($t, 'hello'), 3, '... hello, pinned and least recently used, stays');
is(present($t, 'app'), 0, '... team/app, the oldest unpinned, goes instead');
is(present($t, 'multi'), 3, '... library/multi stays');

$t->stop;


# 3. inactive: what nobody read for that long goes, whatever the size

$t = PT::Nginx->new(conf => cache_conf(store_args => " inactive=3s"));
$t->start;
setup_cache($t, $reg->url);

# team/app is read last while it is pulled: no earlier than $t0
my $t0 = time;
pull($t, 'app');
pull($t, 'hello');
# hello is read every second, team/app never again
ok(wait_for(sub { pull($t, 'hello'); present($t, 'app') == 0 }, 20),
   'inactive=3s: team/app, unread, is evicted');
# access times are kept to the second: 3s inactive is at least 2s later
cmp_ok(time - $t0, '>=', 2, '... not before it was inactive');
is(present($t, 'hello'), 3, '... hello, read all along, stays');

$t->stop;

done_testing;
