#!/usr/bin/perl

# Process faults during a fill: "nginx -s reload" while a blob is being
# fetched keeps the old worker alive until the fill is committed (its
# client gets the whole verified blob, the blob is stored, no temp file
# stays behind), as nginx keeps a worker for the requests it serves; a
# worker killed mid-fill leaves nothing half-written that is ever served.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep time);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(openssl));

my $L = PT::Images::build('hello');
my $blob = $L->{refs}{'hello-1.0'}{layers}[1];          # 3 MiB
my $second = $L->{refs}{'hello-1.1'}{layers}[1];        # 9 KiB

# blobs of library/slow stop after 4 KiB until their flag exists
my $fake = PT::FakeUpstream->new(
    blob_dirs => [ "$L->{dir}/blobs" ],
    hook => sub {
        my ($req, $f) = @_;
        my ($ref) = $req->{path} =~ m{^/v2/library/slow/blobs/(sha256:[0-9a-f]+)$} or return;
        return [ 200, [ 'Content-Type' => 'application/octet-stream' ],
                 { file => $f->blob_file($ref), pause_at => 4096,
                   wait_flag => 'go-' . substr($ref, 7, 8) } ];
    })->start;

my $t = PT::Nginx->new(conf => cache_conf(registry => 'proxy_read_timeout 60s;'));
$t->start;
setup_cache($t, $fake->url);

# --- a reload during a fill ---

my $started = $t->dir . '/started';
my $bg = bg_stream_get($t, "/v2/cache/library/slow/blobs/$blob", started => $started);
ok(wait_for(sub { -e $started }, 10), 'a fill under way: its client has the first bytes');
my @old = @{ $t->worker_pids };

# the harness's reload waits for the old workers to go: not this one
{
    local $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
    my $d = $t->dir;
    my $out = `$PT::Nginx::NGINX -p $d/ -c @{[ $t->conf_file ]} -e @{[ $t->error_log_file ]} -s reload 2>&1`;
    is($?, 0, 'nginx -s reload') or diag($out);
}
ok(wait_for(sub { grep({ my $p = $_; !grep { $_ == $p } @old } @{ $t->worker_pids }) }, 15),
   '... a new worker started');
ok(wait_for(sub { $t->error_log =~ /$old[0]#\d+: gracefully shutting down/ }, 15),
   '... the old one is shutting down');
sleep 1.5;    # the time a worker with nothing to keep it would take to exit
ok(kill(0, $old[0]), '... and still alive, its fill not done');

$fake->set_flag('go-' . substr($blob, 7, 8), 1);
my $r = bg_result($bg, 60);
is($r->{status}, 200, 'the fill goes on in the old worker');
ok($r->{complete}, '... its client gets the whole blob');
is($r->{sha256}, $blob, '... the verified bytes');
ok(wait_for(sub { -f blob_file($t, $blob) }, 10), '... and it is stored');
ok(wait_for(sub { !kill(0, $old[0]) }, 15), 'then the old worker exits');
is_deeply([ tmp_files($t) ], [], 'no temp file stays behind');

$fake->reset_requests;
my $hit = $t->get("/v2/cache/library/slow/blobs/$blob");
is(length($hit->{content} // ''), -s blob_file($t, $blob), 'a later GET is served from the store');
is(scalar($fake->requests), 0, '... without the upstream');

# --- a worker killed during a fill ---

$started = $t->dir . '/started2';
$bg = bg_stream_get($t, "/v2/cache/library/slow/blobs/$second", started => $started);
ok(wait_for(sub { -e $started }, 10), 'another fill under way');
$t->kill_worker;
$r = bg_result($bg, 30);
ok(!$r->{complete}, 'its worker killed: the client does not get a complete body');
ok(!-e blob_file($t, $second), '... nothing is stored');
$fake->set_flag('go-' . substr($second, 7, 8), 1);
$r = $t->get("/v2/cache/library/slow/blobs/$second");
is($r->{status}, 200, 'the next request fetches it again');
is(PT::Pull::sha256_digest($r->{content}), $second, '... whole and verified');
ok(wait_for(sub { !grep { !/\.lock$/ } tmp_files($t) }, 10), '... no temp file left');

$t->allow_log(qr/exited on signal 9/);
$t->stop;
$t->check_error_log;

done_testing;
