#!/usr/bin/perl

# Persistence: everything survives a restart, a reload (with a new
# configuration too), a worker killed with SIGKILL (also while it writes),
# and a crash of the whole server; store files are 0600.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use PT::Nginx;
use PT::Pulp;

my $conf = admin_conf(workers => 2, listen_args => ' reuseport');
my $t = PT::Nginx->new(conf => $conf)->start;

sub snapshot {
    return {
        remotes => list_all($t, "$REMOTES?ordering=pulp_created"),
        dists   => list_all($t, "$DISTS?ordering=pulp_created"),
        tasks   => list_all($t, "$TASKS?ordering=pulp_created"),
    };
}

# $n GETs of every object: each worker answers some of them
sub all_answer {
    my ($snap, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @bad;
    for my $round (1 .. 4) {
        for my $o (map { @{ $snap->{$_} } } qw(remotes dists tasks)) {
            my $r = $t->get($o->{pulp_href});
            push @bad, "$o->{pulp_href}: $r->{status}" unless $r->{status} == 200
                && dump_json($r->{json}) eq dump_json($o);
        }
    }
    ok(!@bad, $name) or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
}

my $seq = 0;
sub make_some {
    my $n = ++$seq;
    my $rem = create_remote($t, name => "remote-$n", url => "https://r$n.example",
                            username => "user-$n", password => "pass-$n", download_concurrency => $n,
                            headers => [ { 'X-N' => "$n" } ], pulp_labels => { n => "$n" });
    my $d = create_dist($t, name => "dist-$n", base_path => "cache-$n", remote => $rem->{pulp_href},
                        description => "dist $n");
    task_of($t, $t->patch($rem->{pulp_href}, { max_retries => $n }));
    return ($rem, $d);
}

make_some() for 1 .. 3;
my $snap = snapshot();
is(scalar @{ $snap->{remotes} }, 3, 'three remotes made');
is(scalar @{ $snap->{tasks} }, 6, 'six tasks made');


# file modes

my $meta = $t->store . '/meta';
ok(-d $meta, 'store has meta/');
is(sprintf('%04o', (stat $meta)[2] & 07777), '0700', 'meta/ is 0700');
for my $f (qw(data.mdb lock.mdb)) {
    ok(-f "$meta/$f", "meta/$f exists");
    is(sprintf('%04o', (stat "$meta/$f")[2] & 07777), '0600', "meta/$f is 0600");
}
ok(-d $t->store . "/$_", "store has $_/") for qw(blobs tmp);


# restart

$t->stop;
$t->start;
is_deeply(snapshot(), $snap, 'restart: everything as before');
all_answer($snap, 'restart: every object answers, from every worker');
is_field_errors($t->post($REMOTES, { name => 'remote-1', url => 'https://x.example' }),
                { name => 'This field must be unique.' }, 'restart: names still unique');
is_field_errors($t->post($DISTS, { name => 'x', base_path => 'cache-1/x', remote => $snap->{remotes}[0]{pulp_href} }),
                { base_path => 'Overlaps with existing distribution "dist-1".' }, 'restart: base paths still known');
is_json_status($t->delete($snap->{remotes}[0]{pulp_href}), 409, undef, 'restart: remote still in use');
make_some();
$snap = snapshot();
is(scalar @{ $snap->{remotes} }, 4, 'restart: creates work');
for my $f (qw(data.mdb lock.mdb)) {
    is(sprintf('%04o', (stat "$meta/$f")[2] & 07777), '0600', "restart: meta/$f still 0600");
}


# reload

my $old = $t->worker_pids;
my $new = $t->reload;
ok(!grep({ my $p = $_; grep { $_ == $p } @$old } @$new), 'reload: new workers');
is_deeply(snapshot(), $snap, 'reload: everything as before');
all_answer($snap, 'reload: every object answers');
make_some();
$snap = snapshot();
is(scalar @{ $snap->{remotes} }, 5, 'reload: creates work');

# reload with another configuration: one more server on another port
$t->set_conf(admin_conf(workers => 2, listen_args => ' reuseport', servers => <<'EOF'));
    server {
        listen 127.0.0.1:%%PORT2%%;
        location /pulp/api/v3/ { pullthrough_admin; }
    }
EOF
$t->reload;
my $r = $t->get("$REMOTES?ordering=pulp_created&limit=1000", port => 2);
is_deeply($r->{json}{results}, $snap->{remotes}, 'reload with a new server: it sees the store');
$r = $t->post($REMOTES, { name => 'via-port2', url => 'https://x.example' }, port => 2);
is($r->{status}, 201, 'reload with a new server: it writes');
is($t->get($r->{json}{pulp_href})->{status}, 200, 'and the first server reads that');
task_of($t, $t->delete($r->{json}{pulp_href}));
$snap = snapshot();


# a worker killed with SIGKILL

for my $w (@{ $t->worker_pids }) {
    $t->kill_worker($w);
}
is_deeply(snapshot(), $snap, 'SIGKILL to each worker: everything as before');
all_answer($snap, 'SIGKILL: every object answers');
make_some();
$snap = snapshot();
is(scalar @{ $snap->{remotes} }, 6, 'SIGKILL: creates work');


# workers killed while they write: every create answered 201 is kept, and
# no name is left half-made

my $dir = $t->dir;
my @writers;
for my $wr (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # a writer: creates until told to stop, logs "name status" lines
        open my $log, '>', "$dir/writes.$wr.log" or POSIX::_exit(1);
        $log->autoflush(1);
        for my $i (1 .. 1000) {
            last if -e "$dir/writes.stop";
            my $name = sprintf 'w-%d-%04d', $wr, $i;
            my $r = $t->post($REMOTES, { name => $name, url => 'https://w.example', password => 'pw' });
            print $log "$name $r->{status}\n";
        }
        POSIX::_exit(0);
    }
    push @writers, $pid;
}

my $written = sub {
    my $n = 0;
    $n += () = PT::Util::slurp("$dir/writes.$_.log") =~ /\n/g for 1 .. 4;
    return $n;
};
my $wait_writes = sub {
    my ($n) = @_;
    my $deadline = time + 20;
    sleep 0.005 while $written->() < $n && time < $deadline;
};

for my $k (1 .. 8) {
    $wait_writes->($written->() + 6);
    my $w = $t->worker_pids;
    $t->kill_worker($w->[ $k % 2 ]);
}
$wait_writes->($written->() + 6);
open my $stop, '>', "$dir/writes.stop" or die;
close $stop;
waitpid($_, 0) for @writers;

my %status = map { split / / } map { split /\n/, PT::Util::slurp("$dir/writes.$_.log") } 1 .. 4;
my @acked = sort grep { $status{$_} == 201 } keys %status;
my @other = sort grep { $status{$_} != 201 } keys %status;
cmp_ok(scalar @acked, '>=', 40, 'writes went on while workers were killed');
diag(scalar(@acked) . ' creates acknowledged, ' . scalar(@other) . ' interrupted') if $ENV{PT_VERBOSE};

my %have = map { $_->{name} => $_ } @{ list_all($t, "$REMOTES?name__startswith=w-") };
my @lost = grep { !$have{$_} } @acked;
ok(!@lost, 'every acknowledged create is kept') or diag("lost: @lost");
ok(!grep({ $status{$_} != 201 && $status{$_} != 599 } keys %status), 'no create failed but by the kill')
    or diag(join ' ', map { "$_=$status{$_}" } @other);

my @half;
for my $name (grep { !$have{$_} } @other) {
    my $r = $t->post($REMOTES, { name => $name, url => 'https://w.example' });
    push @half, "$name: $r->{status} $r->{content}" unless $r->{status} == 201;
}
ok(!@half, 'interrupted creates left nothing behind: their names can be created') or diag(join "\n", @half);
is(scalar @{ list_all($t, "$REMOTES?name__startswith=w-") }, scalar(keys %status), 'one remote per name');
is_field_errors($t->post($REMOTES, { name => $acked[0], url => 'https://x.example' }),
                { name => 'This field must be unique.' }, 'names still unique after the kills');
my @left = map { $_->{pulp_href} } @{ list_all($t, "$REMOTES?name__startswith=w-") };
my @undeleted = grep { $t->delete($_)->{status} != 202 } @left;
ok(!@undeleted, 'every one can be deleted') or diag("@undeleted");
is_deeply(snapshot()->{remotes}, $snap->{remotes}, 'and the rest is as before');
$snap = snapshot();


# a crash: SIGKILL to the master and every worker

$t->kill_all;
$t->start;
is_deeply(snapshot(), $snap, 'crash: everything as before');
all_answer($snap, 'crash: every object answers');
make_some();
is(scalar @{ snapshot()->{remotes} }, 7, 'crash: creates work');
for my $f (qw(data.mdb lock.mdb)) {
    is(sprintf('%04o', (stat "$meta/$f")[2] & 07777), '0600', "crash: meta/$f still 0600");
}

$t->stop;
done_testing;
