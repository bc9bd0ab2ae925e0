#!/usr/bin/perl

# The store belongs to the worker user: when the master runs as root and
# workers as another user (nobody), the store's directories and files are
# theirs and workers can write; a store first made by root-run workers still
# works after a switch to nobody. When the tests do not run as root, the
# workers run as the current user and the same checks apply to it.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my ($user, $group, $uid, $gid);
if ($> == 0) {
    my @pw = getpwnam('nobody') or die "no user nobody\n";
    ($user, $uid, $gid) = @pw[0, 2, 3];
    $group = getgrgid($gid) // die "no group $gid\n";
} else {
    ($user, $uid, $gid) = ((getpwuid $>)[0], $>, $) + 0);
    $group = getgrgid($gid);
}

sub owners_ok {
    my ($t, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $s = $t->store;
    my @bad = grep { !-e $_ || (stat $_)[4] != $uid }
        ($s, "$s/meta", "$s/meta/data.mdb", "$s/meta/lock.mdb", "$s/blobs", "$s/tmp");
    ok(!@bad, "$name: store owned by $user")
        or diag(join "\n", map { "$_: " . (-e $_ ? 'uid ' . (stat $_)[4] : 'missing') } @bad);
}

sub workers_as_ok {
    my ($t, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @bad = grep { (stat "/proc/$_")[4] != $uid } @{ $t->worker_pids };
    ok(@{ $t->worker_pids } && !@bad, "$name: workers run as $user");
}

my $conf = admin_conf(workers => 2, main => "user $user $group;");
my $t = PT::Nginx->new(conf => $conf);
chmod 0711, $t->dir;    # workers must reach the store under the test directory
$t->start;

workers_as_ok($t, 'fresh store');
owners_ok($t, 'fresh store');
my $r = $t->post($REMOTES, { name => 'a', url => 'https://a.example', password => 'pw' });
is($r->{status}, 201, "fresh store: workers as $user write");
my $href = $r->{json}{pulp_href};
task_of($t, $t->patch($href, { url => 'https://b.example' }));
$t->restart;
is($t->get($href)->{json}{url}, 'https://b.example', 'restart: data kept');
is($t->post($REMOTES, { name => 'b', url => 'https://b.example' })->{status}, 201, 'restart: writes');
$t->stop;

# a store made while workers ran as root (or the current user), then used by
# workers as nobody
my $t2 = PT::Nginx->new(conf => admin_conf());
chmod 0711, $t2->dir;
$t2->start;
$href = create_remote($t2, name => 'made-before', url => 'https://x.example')->{pulp_href};
$t2->stop;
$t2->set_conf($conf);
if (ok($t2->try_start, "switched user: nginx starts, workers as $user run")) {
    workers_as_ok($t2, 'switched user');
    is($t2->get($href)->{status}, 200, 'switched user: data readable');
    is($t2->post($REMOTES, { name => 'after', url => 'https://x.example' })->{status}, 201,
       'switched user: writes');
    owners_ok($t2, 'switched user');
    $t2->stop;
} else {
    diag(join "\n", grep { /emerg|alert/ } split /\n/, $t2->error_log);
    $t2->allow_log(qr/./);    # the failure was reported above
}

# a store path that cannot be a directory: nginx does not start, and says why
my $t3 = PT::Nginx->new(conf => admin_conf(), store => '/dev/null/store');
ok(!$t3->try_start, 'store under a file: nginx does not start');
my @emerg = grep { /\[emerg\].*\/dev\/null\/store/ } split /\n/, $t3->error_log;
ok(@emerg, 'store under a file: an [emerg] names the path') or diag($t3->error_log);
$t3->allow_log(qr{\[emerg\].*/dev/null/store});

done_testing;
