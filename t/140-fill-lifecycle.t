#!/usr/bin/perl

# The life of a fill of the 100 MiB blob: streamed to a slow client with
# bounded worker memory; completed and committed when its client goes away;
# a worker killed with SIGKILL mid-fill leaves nothing partial in the store
# and its temp file is removed when the replacement worker starts; temp
# files of dead processes are removed when nginx starts afresh.
#
# The fake upstream serves the blob at full speed, or stops at 20 MiB until
# the test lets it go on, so that "mid-fill" is a state, not a race.

use strict;
use warnings;

use Test::More;
use Fcntl ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(openssl mdb_dump));

my $MiB = 1024 * 1024;
my $big = PT::Images::build('big');
my $d = $big->{layers}{'big-data'}{digest};
my $size = $big->{layers}{'big-data'}{size};
ok($size >= 100 * $MiB, 'the blob: 100 MiB');

my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$big->{dir}/blobs" ],
    hook => sub {
        my ($req, $fake) = @_;
        my ($repo, $ref) = $req->{path} =~ m{^/v2/(.+)/blobs/([^/]+)$} or return;
        return [ 404, [ 'Content-Type' => 'application/json' ],
                 '{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}' ]
            if $repo =~ m{^library/none-};
        return unless $repo =~ m{^library/(gate|bad)-(\w+)$};
        return [ 200, [ 'Content-Type' => 'application/octet-stream',
                        'Docker-Content-Digest' => $ref ],
                 { file => $fake->blob_file($ref),
                   pause_at => ($ref eq $d ? 20 * $MiB : 1024),
                   wait_flag => "go-$2",
                   corrupt => ($1 eq 'bad' ? 1 : 0) } ];
    })->start;

sub cache {
    my $t = PT::Nginx->new(conf => cache_conf(registry => 'proxy_read_timeout 60s;'));
    $t->start;
    setup_cache($t, $fake->url);
    return $t;
}

# two workers, clients spread over them (reuseport), each answer naming its
# worker in X-Pid
sub two_workers {
    my $t = PT::Nginx->new(conf => cache_conf(workers => 2, listen => 'reuseport',
                                              registry => 'proxy_read_timeout 60s; '
                                                          . 'add_header X-Pid $pid always;'));
    $t->start;
    setup_cache($t, $fake->url);
    return $t;
}

# the blobs record of $repo for the big blob (its size as text), from LMDB
sub blob_record {
    my ($t, $repo) = @_;
    my $out = `mdb_dump -p -s blobs ${\ $t->store}/meta 2>/dev/null`;
    my @l = split /\n/, $out;
    shift @l while @l && $l[0] ne 'HEADER=END';
    shift @l;
    while (@l >= 2) {
        my ($k, $v) = (shift @l, shift @l);
        last if $k eq 'DATA=END';
        $k =~ s/^ //;
        $v =~ s/^ //;
        # the value: its format byte (1), then the size
        return $v =~ s/^\\01//r if $k eq "$repo\\00$d";
    }
    return undef;
}

sub temp_size {
    my ($t) = @_;
    my @f = tmp_files($t);
    return @f ? (-s $t->store . "/tmp/$f[0]") // 0 : -1;
}

# "zombie", "running (...)" or "gone"
sub proc_state {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 'gone';
    my $st = <$fh> // '';
    my ($comm, $state) = $st =~ /^\d+ \((.*)\) (\S)/ or return 'gone';
    return $state eq 'Z' ? "a zombie ($comm)" : "running ($comm, $state)";
}

sub blob_visible {
    my ($t) = @_;
    my $hex = substr($d, 7);
    return scalar grep { /\Q$hex\E/ } store_files($t);
}


# a slow client: the whole blob, and the worker's memory stays bounded

{
    my $t = cache();
    is(http_get($t, '/v2/')->{status}, 200, 'memory: nginx answers');
    my $w = $t->worker_pids->[0];
    my $rss0 = vm_kib($w);
    my $hwm0 = vm_kib($w, 'VmHWM');
    my $max = $rss0;
    my $samples = 0;

    my $r = stream_get($t, "/v2/cache/library/big/blobs/$d",
                       rcvbuf => 64 * 1024, chunk => 64 * 1024, delay => 0.001,
                       idle_timeout => 5, timeout => 60,
                       on_read => sub {
                           my $v = vm_kib($w) // return;
                           $samples++;
                           $max = $v if $v > $max;
                       });

    ok($r->{complete}, 'a client slower than the fill gets the whole blob')
        or diag(sprintf '%d of %d bytes, %s, %.1f s', $r->{length}, $size,
                $r->{error} // ($r->{eof} ? 'closed' : '?'), $r->{seconds});
    is($r->{sha256}, $d, '... the right bytes') if $r->{complete};
    my $hwm = vm_kib($w, 'VmHWM');
    note(sprintf 'worker %d: VmRSS %d KiB before, at most %d KiB in %d samples; '
         . 'VmHWM %d -> %d KiB; %.1f s', $w, $rss0, $max, $samples, $hwm0, $hwm,
         $r->{seconds});
    ok($samples > 100, "memory: RSS sampled $samples times");
    SKIP: {
        skip PT::Pull::memory_unmeasurable(), 2 if PT::Pull::memory_unmeasurable();
        ok($max - $rss0 < 16 * 1024,
           sprintf('memory: RSS grew by %d KiB while streaming 100 MiB', $max - $rss0));
        ok($hwm - $hwm0 < 16 * 1024,
           sprintf('memory: peak RSS (VmHWM) grew by %d KiB', $hwm - $hwm0));
    }
    ok(wait_for(sub { -f blob_file($t, $d) }, 20), 'memory: the blob was stored');
    is($t->worker_pids->[0], $w, 'memory: the same worker throughout');
    $t->stop;
}


# a client that goes away mid-fill: the fill completes and is committed

{
    my $t = cache();
    my $path = "/v2/cache/library/gate-abort/blobs/$d";

    my $r = stream_get($t, $path, abort_after => $MiB, idle_timeout => 10);
    is($r->{status}, 200, 'abort: the answer had begun');
    ok($r->{aborted} && $r->{length} == $MiB, 'abort: the client read 1 MiB and left');
    ok(wait_for(sub { temp_size($t) >= 19 * $MiB }, 20),
       'abort: the fill is at the pause (20 MiB)');
    ok(!blob_visible($t), 'abort: nothing in the store mid-fill');

    # another client joins the fill its first client left
    my $dir = tempdir('pt-140-abort-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $h = bg_stream_get($t, $path, started => "$dir/b", idle_timeout => 30);
    ok(wait_for(sub { -e "$dir/b" }, 20), 'abort: a second client has its first bytes');

    $fake->set_flag('go-abort');
    my $rb = bg_result($h, 60);
    ok($rb->{complete} && $rb->{sha256} eq $d,
       'abort: the second client gets the whole blob from the same fill');
    is(scalar(my @g = $fake->requests_matching('GET', qr{/gate-abort/blobs/})), 1,
       'abort: one upstream request for both');
    ok(wait_for(sub { -f blob_file($t, $d) }, 30),
       'abort: the fill completes without its client');
    is(-f blob_file($t, $d) ? file_digest(blob_file($t, $d)) : '', $d,
       'abort: the stored blob is right');
    ok(wait_for(sub { !tmp_files($t) }), 'abort: no temp file left');

    $fake->reset_requests;
    $r = stream_get($t, $path, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, 'abort: a later GET gets the blob');
    is(scalar(my @u = $fake->requests), 0, 'abort: ... with no upstream request');
    my $lines = sub { grep { $_->{path} =~ m{/gate-abort/} } cache_log($t) };
    wait_for(sub { $lines->() >= 3 });
    is_deeply([ sort map { $_->{cache} } $lines->() ], [qw(HIT JOIN MISS)],
              'abort: logged MISS (the first client), JOIN (the second), HIT');
    $t->stop;
}


# a worker killed with SIGKILL mid-fill

{
    my $t = cache();
    my $path = "/v2/cache/library/gate-kill/blobs/$d";
    my $dir = tempdir('pt-140-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

    my $h = bg_stream_get($t, $path, idle_timeout => 30);
    ok(wait_for(sub { temp_size($t) >= 19 * $MiB }, 20),
       'kill: the fill is at the pause (20 MiB)');
    my @tmp = tmp_files($t);
    my $old = $t->worker_pids->[0];
    is(scalar @tmp, 1, 'kill: one temp file');
    like($tmp[0] // '', qr/^\Q$old\E\./, 'kill: named after its worker');
    ok(!blob_visible($t), 'kill: nothing in the store mid-fill');

    $t->allow_log(qr/worker process \d+ exited on signal 9/);
    my $new = $t->kill_worker($old);
    isnt($new->[0], $old, 'kill: a new worker replaced the killed one');

    my $r = bg_result($h, 30);
    ok(!$r->{complete} && $r->{length} < $size,
       "kill: the client got a cut body ($r->{length} bytes)");
    ok(wait_for(sub { !grep { $_ eq ($tmp[0] // '') } tmp_files($t) }, 10),
       'kill: the temp file is removed once the new worker runs');
    ok(!blob_visible($t), 'kill: no partial blob in the store');

    # the upstream connection of the killed worker is gone: let it go on
    $fake->set_flag('go-kill');
    $fake->reset_requests;
    $r = stream_get($t, $path, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, 'kill: the next pull gets the blob');
    is(scalar(my @u = $fake->requests), 1, 'kill: ... fetched again');
    ok(wait_for(sub { -f blob_file($t, $d) }, 20), 'kill: ... and stored');
    is(-f blob_file($t, $d) ? file_digest(blob_file($t, $d)) : '', $d,
       'kill: the stored blob is right');
    ok(wait_for(sub { !tmp_files($t) }), 'kill: no temp file left');


    # stale temp files: those no process holds (writers keep a lock on
    # them) go when a worker starts and when nginx starts afresh

    my $pid_max = do { open my $fh, '<', '/proc/sys/kernel/pid_max'; <$fh> } || 4194304;
    my $dead = $pid_max + 1;
    my $tdir = $t->store . '/tmp';
    for my $f ("$$.1.fill", "$dead.2.fill", "$dead.3.small") {
        open my $fh, '>', "$tdir/$f" or die "$tdir/$f: $!";
        print $fh 'x' x 1000;
        close $fh;
    }
    # one in use, as a filling process holds it
    open my $held, '<', "$tdir/$$.1.fill" or die "$tdir/$$.1.fill: $!";
    flock($held, Fcntl::LOCK_EX()) or die "flock: $!";
    $t->kill_worker;
    ok(wait_for(sub { !-e "$tdir/$dead.2.fill" && !-e "$tdir/$dead.3.small" }, 10),
       'stale temp files of a dead process: removed when a worker starts');
    ok(-e "$tdir/$$.1.fill", 'temp files in use: kept');
    # a fresh start too removes only what no process holds: another nginx
    # (a binary upgrade, a second start by mistake) may be filling
    open my $fh, '>', "$tdir/$dead.4.fill" or die "$tdir/$dead.4.fill: $!";
    close $fh;
    $t->restart;
    is_deeply([ tmp_files($t) ], [ "$$.1.fill" ],
              'a fresh start removes the temp files nobody holds');
    close $held;
    unlink "$tdir/$$.1.fill";
    ok(-f blob_file($t, $d), 'the stored blob survives restarts');

    # nginx crashes mid-fill (master and workers killed): the next start
    # removes what the dead worker was filling
    my $s = $big->{layers}{'big-small'}{digest};
    my $spath = "/v2/cache/library/gate-crash/blobs/$s";
    my $h2 = bg_stream_get($t, $spath, idle_timeout => 30);
    ok(wait_for(sub { temp_size($t) >= 1024 }, 20), 'crash: a fill is at its pause');
    my @crash = tmp_files($t);
    $t->kill_all;
    my $r2 = bg_result($h2, 30);
    ok(!$r2->{complete}, 'crash: the client got no whole blob');
    is_deeply([ tmp_files($t) ], \@crash, 'crash: its temp file is left behind');
    # (restarted at once, as a supervisor would: the killed workers may
    # still be zombies, but they are dead and fill nothing)
    $t->start;
    is_deeply([ tmp_files($t) ], [], 'crash: removed when nginx starts again')
        or diag(join "\n", map { my ($p) = /^(\d+)\./;
                                  "$_: process $p " . proc_state($p) } tmp_files($t));
    ok(!-e blob_file($t, $s), 'crash: nothing partial in the store');
    $fake->set_flag('go-crash');
    $r2 = stream_get($t, $spath, idle_timeout => 10);
    ok($r2->{complete} && $r2->{sha256} eq $s, 'crash: the next pull gets the blob');

    $fake->reset_requests;
    my $mark = cache_log_mark($t);
    $r = stream_get($t, $path, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, 'after a restart: the blob');
    is(scalar(@u = $fake->requests), 0, 'after a restart: no upstream request');
    my $l = wait_cache_log($t, $mark, 'GET', qr{/gate-kill/blobs/});
    is($l && $l->{cache}, 'HIT', 'after a restart: a HIT');
    $t->stop;
}


# clients of two workers at once: every one gets the blob, from one fill
# (the other worker's clients follow it in the shared zone), one file

{
    my $t = two_workers();
    my $path = "/v2/cache/library/gate-twice/blobs/$d";
    my $dir = tempdir('pt-140-twice-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $fake->reset_requests;
    my $mark = cache_log_mark($t);

    my @h = (bg_stream_get($t, $path, started => "$dir/1", idle_timeout => 30));
    ok(wait_for(sub { -e "$dir/1" }, 20), 'two workers: the first client has bytes');

    # the filling worker: its temp file is <pid>.<n>.fill
    my ($owner) = map { /^(\d+)\./ ? $1 : () } tmp_files($t);
    ok($owner, "two workers: worker $owner fills") or diag(join ' ', tmp_files($t));

    # clients until one reaches the other worker (reuseport spreads them):
    # it has the header and bytes while the fill is paused upstream
    my $probe;
    for (1 .. 40) {
        my $p = stream_get($t, $path, idle_timeout => 0.5, timeout => 10);
        if (($p->{headers}{'x-pid'} // $owner) ne $owner) { $probe = $p; last }
    }
    ok($probe, 'two workers: a client of the other worker');
    is($probe && $probe->{status}, 200, '... 200 while the fill runs in the first');
    ok($probe && $probe->{length} > 0 && !$probe->{complete},
       '... bytes as they come, not the end') or diag(explain($probe));

    push @h, map { bg_stream_get($t, $path, started => "$dir/$_", idle_timeout => 30) }
             2 .. 6;
    ok(wait_for(sub { 6 == grep { -e "$dir/$_" } 1 .. 6 }, 20),
       'two workers: six clients have their first bytes');
    ok(!blob_visible($t), 'two workers: nothing in the store mid-fill');
    $fake->set_flag('go-twice');

    my @r = map { bg_result($_, 60) } @h;
    is(scalar(grep { $_->{complete} && $_->{sha256} eq $d } @r), 6,
       'two workers: every client got the whole blob')
        or diag(join "\n", map { "$_->{status} $_->{length} "
                                 . ($_->{error} // '') } @r);
    my $n = () = $fake->requests_matching('GET', qr{/blobs/});
    is($n, 1, 'two workers: one upstream fill');
    ok(wait_for(sub { -f blob_file($t, $d) && !tmp_files($t) }, 20),
       'two workers: stored, no temp file left');
    is(-f blob_file($t, $d) ? file_digest(blob_file($t, $d)) : '', $d,
       'two workers: the stored blob is right');
    wait_for(sub { grep({ $_->{path} =~ /gate-twice/ } cache_log($t, $mark)) >= 7 });
    my @l = grep { $_->{path} =~ /gate-twice/ } cache_log($t, $mark);
    my %pids = map { $_->{pid} => 1 } @l;
    note('clients served by ' . scalar(keys %pids) . ' worker(s): '
         . join(' ', map { "$_->{pid}:$_->{cache}" } @l));
    is(scalar(grep { $_->{cache} eq 'MISS' } @l), $n,
       'two workers: one MISS per fill, the rest JOIN');
    $t->stop;
}

# two repositories sharing a blob (a base layer): the second one's client,
# once its upstream confirms the blob with a HEAD, follows the first one's
# fill; the blob is then recorded for both. A repository whose upstream
# does not have it gets its 404.

{
    my $t = cache();
    my $dir = tempdir('pt-140-share-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $p1 = "/v2/cache/library/gate-share/blobs/$d";
    my $p2 = "/v2/cache/library/gate-sharetoo/blobs/$d";
    $fake->reset_requests;
    my $mark = cache_log_mark($t);

    my $a = bg_stream_get($t, $p1, started => "$dir/a", idle_timeout => 30);
    ok(wait_for(sub { temp_size($t) >= 19 * $MiB }, 20),
       'shared blob: the first repository\'s fill is at the pause');
    my $b = bg_stream_get($t, $p2, started => "$dir/b", idle_timeout => 30);
    ok(wait_for(sub { -e "$dir/b" }, 20),
       'shared blob: the second repository\'s client has bytes');
    is(scalar(my @tmp = tmp_files($t)), 1, '... from the same fill (one temp file)');

    my $r = http_get($t, "/v2/cache/library/none-here/blobs/$d");
    is_oci_error($r, 404, 'BLOB_UNKNOWN',
                 'a repository whose upstream lacks it: 404, no bytes of the fill');

    $fake->set_flag('go-share');
    my ($ra, $rb) = map { bg_result($_, 60) } $a, $b;
    ok($ra->{complete} && $ra->{sha256} eq $d, 'shared blob: the first client got it');
    ok($rb->{complete} && $rb->{sha256} eq $d, 'shared blob: the second client got it');

    my @up = map { "$_->{method} $_->{path}" } $fake->requests;
    is_deeply([ sort @up ],
              [ sort("GET /v2/library/gate-share/blobs/$d",
                     "HEAD /v2/library/gate-sharetoo/blobs/$d",
                     "HEAD /v2/library/none-here/blobs/$d") ],
              'shared blob: one GET upstream, a HEAD for each other repository')
        or diag(explain(\@up));

    wait_for(sub { grep({ $_->{path} =~ /gate-sharetoo/ } cache_log($t, $mark)) >= 1 });
    my ($l) = grep { $_->{path} =~ /gate-sharetoo/ } cache_log($t, $mark);
    is($l && $l->{cache}, 'JOIN', 'shared blob: logged as JOIN');

    $fake->reset_requests;
    $r = stream_get($t, $p2, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, 'shared blob: the second repository again');
    is(scalar(@up = $fake->requests), 0, '... a hit: recorded for it too');
    $t->stop;
}


# the same across workers: a client of the second repository in the other
# worker follows the fill there, and the blob is recorded for its
# repository even though that client left early

{
    my $t = two_workers();
    my $dir = tempdir('pt-140-sharetwo-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $p1 = "/v2/cache/library/gate-sharetwo/blobs/$d";
    my $p2;
    $fake->reset_requests;

    my $a = bg_stream_get($t, $p1, started => "$dir/a", idle_timeout => 30);
    ok(wait_for(sub { temp_size($t) >= 19 * $MiB }, 20),
       'shared blob, two workers: the fill is at the pause');
    my ($owner) = map { /^(\d+)\./ ? $1 : () } tmp_files($t);

    # a repository of its own for each try: the one that reached the other
    # worker was followed there only
    my ($probe, $repo2);
    for my $i (1 .. 40) {
        my $p = stream_get($t, "/v2/cache/library/gate-sharetwo${i}x/blobs/$d",
                           idle_timeout => 0.5, timeout => 10);
        if (($p->{headers}{'x-pid'} // $owner) ne $owner) {
            ($probe, $repo2) = ($p, "cache/library/gate-sharetwo${i}x");
            $p2 = "/v2/$repo2/blobs/$d";
            last;
        }
    }
    ok($probe && $probe->{status} == 200 && $probe->{length} > 0
       && !$probe->{complete},
       'shared blob, two workers: the other worker\'s client follows the fill')
        or diag(explain($probe));
    is(scalar(my @tmp = tmp_files($t)), 1, '... one temp file');

    $fake->set_flag('go-sharetwo');
    my $ra = bg_result($a, 60);
    ok($ra->{complete} && $ra->{sha256} eq $d, 'shared blob, two workers: the first client got it');
    is(scalar(my @g = $fake->requests_matching('GET', qr{/blobs/})), 1,
       '... one GET upstream');

    # recorded for the second repository, with its size, when the fill
    # ended (a HEAD's confirmation would record it without one)
    ok(wait_for(sub { (blob_record($t, $repo2 // '') // '') eq $size }, 10),
       'shared blob, two workers: recorded for the second repository at the end')
        or diag(blob_record($t, $repo2 // '') // 'none');
    $fake->reset_requests;
    my $r = stream_get($t, $p2, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, '... served to it');
    is(scalar(my @u = $fake->requests), 0, '... a hit, no upstream asked');
    $t->stop;
}


# the filling worker killed while another worker's clients follow it: they
# are cut too (the follower sees its pid gone), and the next pull fetches

{
    my $t = two_workers();
    my $path = "/v2/cache/library/gate-killtwo/blobs/$d";
    my $dir = tempdir('pt-140-killtwo-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

    my @h = map { bg_stream_get($t, $path, started => "$dir/$_", idle_timeout => 30) }
            1 .. 14;
    ok(wait_for(sub { 14 == grep { -e "$dir/$_" } 1 .. 14 }, 20),
       'kill, two workers: fourteen clients have their first bytes');
    ok(wait_for(sub { temp_size($t) >= 19 * $MiB }, 20),
       'kill, two workers: the fill is at the pause');
    my ($owner) = map { /^(\d+)\./ ? $1 : () } tmp_files($t);
    $t->kill_worker($owner);

    my @r = map { bg_result($_, 60) } @h;
    my @other = grep { ($_->{headers}{'x-pid'} // $owner) ne $owner } @r;
    ok(@other >= 1, 'kill, two workers: clients of the other worker')
        or diag(join ' ', map { $_->{headers}{'x-pid'} // '?' } @r);
    is(scalar(grep { $_->{complete} } @r), 0,
       'kill, two workers: every client got a cut body')
        or diag(join "\n", map { "$_->{status} $_->{length}" } @r);
    ok(!grep({ $_->{error} && $_->{error} =~ /timeout/i } @other),
       "kill, two workers: the other worker's clients were cut, not left waiting")
        or diag(explain(\@other));
    like($t->error_log, qr/worker $owner died filling blob \Q$d\E/,
         'kill, two workers: the error log says why');

    $fake->set_flag('go-killtwo');
    $fake->reset_requests;
    my $r = stream_get($t, $path, idle_timeout => 10);
    ok($r->{complete} && $r->{sha256} eq $d, 'kill, two workers: the next pull gets the blob');
    is(scalar(my @u = $fake->requests), 1, '... fetched again');
    $t->stop;
}


# a blob that does not match its digest, followed by another worker's
# clients: every client of both workers is cut, nothing is stored

{
    my $t = two_workers();
    my $path = "/v2/cache/library/bad-crowd/blobs/$d";
    my $dir = tempdir('pt-140-bad-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $fake->reset_requests;

    my @h = map { bg_stream_get($t, $path, started => "$dir/$_", idle_timeout => 30) }
            1 .. 12;
    ok(wait_for(sub { 12 == grep { -e "$dir/$_" } 1 .. 12 }, 20),
       'bad blob, two workers: twelve clients have their first bytes');
    $fake->set_flag('go-crowd');

    my @r = map { bg_result($_, 60) } @h;
    my %pids = map { ($_->{headers}{'x-pid'} // '?') => 1 } @r;
    is(scalar(keys %pids), 2, 'bad blob, two workers: clients of both workers')
        or diag(join ' ', keys %pids);
    is(scalar(grep { $_->{complete} } @r), 0,
       'bad blob, two workers: no client got a complete body')
        or diag(join "\n", map { "$_->{status} $_->{length}" } @r);
    my $n = () = $fake->requests_matching('GET', qr{/blobs/});
    is($n, 1, 'bad blob, two workers: one upstream fill');
    ok(wait_for(sub { !tmp_files($t) }, 20), 'bad blob, two workers: no temp file left');
    ok(!-e blob_file($t, $d), 'bad blob, two workers: nothing stored');

    # and the next request fetches again (the failure is not remembered)
    $fake->reset_requests;
    $fake->set_flag('go-again');
    my $r = stream_get($t, "/v2/cache/library/gate-again/blobs/$d", idle_timeout => 30);
    is($r->{sha256}, $d, 'after it, a good fill of the blob');
    $t->stop;
}

$fake->stop;

done_testing;
