#!/usr/bin/perl

# The store over time, as an operator sees it: the metrics after a known
# sequence of pulls, Pulp's status with the store's figures, a repository
# deleted through the admin API and its files removed by Pulp's orphan
# cleanup (a task the cache manager runs), the pull-through distribution
# deleted with all it made (blobs asked for without a manifest too), and a
# full disk (a tmpfs store
# too small for a layer): the fill stops cleanly, no partial file stays,
# an alert names the store, and smaller pulls still work.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools slurp);

need_tools(qw(docker-registry skopeo openssl mdb_dump));

my $ACCEPT = $PT::Images::ACCEPT;

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app));
my $hello = $img->{'library/hello:1.0'};
my $app = $img->{'team/app:1.0'};

sub pull {
    my ($t, $repo, $info, $tag) = @_;
    my @r = (logged_request($t, 'GET', "/v2/cache/$repo/manifests/$tag",
                            headers => { Accept => $ACCEPT }));
    push @r, logged_request($t, 'GET', "/v2/cache/$repo/blobs/$_")
        for $info->{config}, @{ $info->{layers} };
    return [ map { "$_->{status} $_->{cache}" } @r ];
}

sub bytes_of { my ($info) = @_; my $n = $info->{size}; $n += $_ for $info->{config_size}, @{ $info->{layer_sizes} }; $n }

# the metrics page as { 'name{labels}' => value }
sub metrics {
    my ($t) = @_;
    my $r = $t->get('/metrics');
    my %m;
    for (split /\n/, $r->{content}) {
        next if /^#/ || !/\S/;
        my ($k, $v) = /^(\S+(?:\{[^}]*\})?) (\S+)$/ or next;
        $m{$k} = $v;
    }
    return (\%m, $r);
}

my $conf = cache_conf(server => 'location = /metrics { pullthrough_metrics; }');


# 1. metrics and status after a known sequence of pulls

my $t = PT::Nginx->new(conf => $conf);
$t->start;
setup_cache($t, $reg->url);

my ($m, $r) = metrics($t);
is($r->{status}, 200, 'GET /metrics: 200');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, '... in Prometheus text format');
is($m->{pullthrough_store_bytes}, 0, '... an empty store: 0 bytes');

is_deeply(pull($t, 'library/hello', $hello, '1.0'), [ ('200 MISS') x 4 ], 'hello:1.0 pulled');
is_deeply(pull($t, 'library/hello', $hello, '1.0'), [ ('200 HIT') x 4 ], '... and again: hits');
is(logged_request($t, 'GET', '/v2/cache/library/none/manifests/1.0',
                  headers => { Accept => $ACCEPT })->{status}, 404, 'a missing image: 404');

($m) = metrics($t);
my $d = 'distribution="pt-cache"';
is($m->{"pullthrough_requests_total{$d,cache_status=\"MISS\"}"}, 4, 'metrics: 4 misses');
is($m->{"pullthrough_requests_total{$d,cache_status=\"HIT\"}"}, 4, '... 4 hits');
is($m->{"pullthrough_requests_total{$d,cache_status=\"ERROR\"}"}
   + $m->{"pullthrough_requests_total{$d,cache_status=\"MISS\"}"}, 5 , '... the 404 counted too (ERROR or MISS)')
    or diag(explain $m);
is($m->{"pullthrough_sent_bytes_total{$d,cache_status=\"HIT\"}"}, bytes_of($hello),
   '... bytes sent from the store: the image once');
is($m->{pullthrough_store_bytes}, bytes_of($hello), '... store bytes: the image');
is($m->{pullthrough_store_files}, 4, '... store files: manifest, config, 2 layers');
is($m->{'pullthrough_upstream_fetched_bytes_total{remote="pt-cache"}'}, bytes_of($hello),
   '... bytes fetched from the upstream: the image once');
cmp_ok($m->{'pullthrough_upstream_requests_total{remote="pt-cache",code="2xx"}'}, '>=', 4,
       '... upstream 2xx answers: at least one per file');
is($m->{'pullthrough_upstream_requests_total{remote="pt-cache",code="4xx"}'}, 1,
   '... one upstream 4xx (the missing image)');
is($m->{pullthrough_fills_in_progress}, 0, '... no fill in progress');
is($m->{pullthrough_digest_mismatches_total}, 0, '... no digest mismatch');
is($m->{pullthrough_evictions_total}, 0, '... no eviction');

my $st = $t->get("$API/status/");
is($st->{status}, 200, 'GET status/: 200');
my $s = $st->{json};
is_deeply([ map { $_->{component} } @{ $s->{versions} } ], [qw(core container)],
          '... versions of core and container, as Pulp');
ok($s->{storage}{total} > 0 && $s->{storage}{free} > 0 && $s->{storage}{used} > 0,
   '... storage: total, used, free of the store\'s file system');
is($s->{database_connection}{connected}, JSON::PP::true, '... the metadata store is connected');
is(scalar @{ $s->{online_workers} }, 1, '... a worker online');
is($s->{cache}{used}, bytes_of($hello), '... cache.used: the files\' bytes');
is($s->{cache}{files}, 4, '... cache.files');
is($s->{cache}{max_size}, undef, '... cache.max_size: none');

# a pin on the pull-through distribution covers every image under it
my ($ptd) = @{ list_all($t, $DISTS) };
ok(task_of($t, $t->patch($ptd->{pulp_href}, { retain => JSON::PP::true })),
   'the pull-through distribution pinned (retain: true)');
ok(wait_for(sub { (metrics($t))[0]{pullthrough_pinned_bytes} == bytes_of($hello) }, 20),
   '... its images\' bytes are reported pinned');
is($t->get("$API/status/")->{json}{cache}{pinned}, bytes_of($hello), '... in the status too');
ok(task_of($t, $t->patch($ptd->{pulp_href}, { retain => JSON::PP::false })), '... and unpinned');

# the totals survive a reload (same zone)
$t->reload;
($m) = metrics($t);
is($m->{"pullthrough_requests_total{$d,cache_status=\"HIT\"}"}, 4, 'after a reload, the counters are kept');


# 2. a repository deleted, then orphan cleanup

pull($t, 'team/app', $app, '1.0');
my ($repo) = grep { $_->{name} eq 'cache/library/hello' }
             @{ list_all($t, "$API/repositories/container/container/") };
$r = $t->request('DELETE', "$repo->{pulp_href}versions/1/");
is($r->{status}, 405, 'DELETE of a repository version: 405 (versions are read-only)');
is($t->get($repo->{pulp_href})->{status}, 200, '... the repository is still there');
$r = $t->request('DELETE', $repo->{pulp_href});
is($r->{status}, 202, 'DELETE of the repository cache/library/hello: 202, a task');
ok(task_of($t, $r), '... completed');
is($t->get($repo->{pulp_href})->{status}, 404, '... the repository is gone');
ok(!(grep { $_->{base_path} eq 'cache/library/hello' }
     @{ list_all($t, "$API/distributions/container/container/") }),
   '... with its per-image distribution');
ok(-f blob_file($t, $hello->{layers}[1]), '... its files stay until an orphan cleanup');

is($t->post("$API/orphans/cleanup/", { orphan_protection_time => -1 })->{status}, 400,
   'orphan cleanup with a negative protection time: 400');
is($t->post("$API/orphans/cleanup/", { content_hrefs => ['/x/'] })->{status}, 400,
   'orphan cleanup of chosen content: 400, not supported');

$r = $t->post("$API/orphans/cleanup/", { orphan_protection_time => 0 });
is($r->{status}, 202, 'orphan cleanup (protection 0): 202, a task');
my $task;
ok(wait_for(sub { $task = $t->get($r->{json}{task})->{json}; $task->{state} eq 'completed' }, 15),
   '... the task completes')
    or diag(explain $task);
is($task->{name}, 'pulpcore.app.tasks.orphan.orphan_cleanup', '... named as Pulp names it');
ok($task->{finished_at}, '... with finished_at');
is(scalar(grep { -f blob_file($t, $_) } $hello->{digest}, $hello->{config}, @{ $hello->{layers} }), 0,
   '... the files of the deleted repository are removed');
is(scalar(grep { -f blob_file($t, $_) } $app->{digest}, $app->{config}, @{ $app->{layers} }), 4,
   '... team/app\'s stay');
my $configs = `mdb_dump -p -s configs ${\ $t->store}/meta 2>&1`;
is_deeply([ map { index($configs, $_) >= 0 ? 1 : 0 } $hello->{config}, $app->{config} ], [ 0, 1 ],
          '... what hello\'s config said goes with it, team/app\'s stays (configs)')
    or diag($configs);
($m) = metrics($t);
is($m->{pullthrough_store_bytes}, bytes_of($app), '... the store\'s bytes are team/app\'s alone');
is($m->{pullthrough_orphans_removed_total}, 4, '... 4 orphans counted');
is_deeply(pull($t, 'library/hello', $hello, '1.0'), [ ('200 MISS') x 4 ],
          'hello:1.0 pulled again: fetched again, works');

# a blob asked for before any manifest of its repository (a node of a
# cluster is asked so, see docs/several-caches.md): recorded for a
# repository that has no per-image distribution, and its
my ($app_repo) = grep { $_->{name} eq 'cache/team/app' }
                 @{ list_all($t, "$API/repositories/container/container/") };
ok(task_of($t, $t->request('DELETE', $app_repo->{pulp_href})), 'team/app\'s repository deleted');
is_deeply([ map { $_->{status} } map { logged_request($t, 'GET', "/v2/cache/team/app/blobs/$_") }
            $app->{config}, @{ $app->{layers} } ], [ 200, 200, 200 ],
          '... its blobs asked for again, without its manifest');
ok(!(grep { $_->{name} eq 'cache/team/app' }
     @{ list_all($t, "$API/repositories/container/container/") }),
   '... they make no repository');

# the pull-through distribution deleted: everything it made goes
my ($pt) = @{ list_all($t, $DISTS) };
ok(task_of($t, $t->request('DELETE', $pt->{pulp_href})), 'the pull-through distribution deleted');
$r = $t->post("$API/orphans/cleanup/", { orphan_protection_time => 0 });
ok(wait_for(sub { $t->get($r->{json}{task})->{json}{state} eq 'completed' }, 15),
   '... an orphan cleanup completes');
is_deeply([ store_files($t) ], [], '... no file is left in the store');
($m) = metrics($t);
is_deeply([ @$m{qw(pullthrough_store_bytes pullthrough_store_files)} ], [ 0, 0 ],
          '... nor any record of one (store bytes and files: 0)');
is_deeply(list_all($t, "$API/content/container/blobs/"), [], '... nor any blob content');

$t->stop;


# 3. a full disk

SKIP: {
    my $mnt = tempdir('pt-410-tmpfs-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    # the store's LMDB (meta/) and app (2 MiB), not hello's 3 MiB layer
    skip 'mounting a tmpfs needs root', 9
        unless $> == 0 && system("mount -t tmpfs -o size=2800k tmpfs $mnt 2>/dev/null") == 0;

    my $full = PT::Nginx->new(conf => cache_conf(server => 'location = /metrics { pullthrough_metrics; }',
                                                 store_args => ' map_size=1m'),
                              store => "$mnt/store");
    $full->allow_log(qr/the store .* is full/, qr/pwrite\(\) .* failed/);
    eval {
        $full->start;
        setup_cache($full, $reg->url);

        my $big = $hello->{layers}[1];
        my $res = stream_get($full, "/v2/cache/library/hello/blobs/$big", timeout => 20);
        ok(!($res->{status} == 200 && $res->{complete}),
           'a layer larger than the free space: not served whole')
            or diag(explain $res);
        ok($res->{status} >= 500 || ($res->{eof} && !$res->{error}),
           '... an error, or the connection closed before the last byte (no hang)')
            or diag(explain $res);
        ok(!-e blob_file($full, $big), '... no partial file in the store');
        ok(wait_for(sub { !tmp_files($full) }, 10), '... and no temp file left')
            or diag(join ' ', tmp_files($full));
        like(slurp($full->error_log_file), qr/\[alert\].*the store "\Q$mnt\E\/store" is full/,
             '... an alert names the store');
        my ($fm) = metrics($full);
        is($fm->{pullthrough_disk_full_total}, 1, '... counted in pullthrough_disk_full_total');
        is($fm->{pullthrough_fills_in_progress}, 0, '... no fill left in progress');

        is_deeply(pull($full, 'team/app', $app, '1.0'), [ ('200 MISS') x 4 ],
                  'team/app (2 MiB) still pulls into the same store');
        is_deeply(pull($full, 'team/app', $app, '1.0'), [ ('200 HIT') x 4 ], '... and is served');
        1;
    } or diag("full disk: $@");
    $full->stop if $full->is_running;
    system("umount $mnt");
}


# 4. min_free: the oldest files go while the file system has less free

SKIP: {
    my $mnt = tempdir('pt-410-tmpfs-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    skip 'mounting a tmpfs needs root', 3
        unless $> == 0 && system("mount -t tmpfs -o size=8m tmpfs $mnt 2>/dev/null") == 0;

    my $mf = PT::Nginx->new(conf => cache_conf(store_args => ' map_size=1m min_free=4m'),
                            store => "$mnt/store");
    eval {
        $mf->start;
        setup_cache($mf, $reg->url);
        pull($mf, 'library/hello', $hello, '1.0');
        pull($mf, 'team/app', $app, '1.0');
        ok(wait_for(sub { !-e blob_file($mf, $hello->{layers}[1]) }, 15),
           'min_free=4m on an 8 MiB file system: hello, the oldest, is evicted');
        is(scalar(grep { -f blob_file($mf, $_) } $app->{config}, @{ $app->{layers} }), 3,
           '... team/app stays');
        my $df = `df -k --output=avail $mnt | tail -1` * 1024;
        cmp_ok($df, '>=', 4 * 1024 * 1024, '... and 4 MiB are free again');
        1;
    } or diag("min_free: $@");
    $mf->stop if $mf->is_running;
    system("umount $mnt");
}

done_testing;
