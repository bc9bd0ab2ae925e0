#!/usr/bin/perl

# Lists at scale cost the page, not the store: with 2000 remotes (and as
# many tasks), the first pages in the order of creation and the name=
# lookups come from indexes, in Pulp's order and with Pulp's count, and a
# worker's memory does not grow with them. Other orderings and filters
# still answer (by a walk of the records).

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;
use PT::Pull qw(vm_kib);

my $N = 2000;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my @names;
for my $i (1 .. $N) {
    my $name = sprintf 'remote-%05d', $i;
    my $r = $t->post($REMOTES, { name => $name, url => "https://r$i.example" });
    die "create $name: $r->{status}\n" unless $r->{status} == 201;
    push @names, $name;
}

my $l = $t->get("$REMOTES?limit=10")->{json};
is($l->{count}, $N, "$N remotes: the count");
is_deeply([ map { $_->{name} } @{ $l->{results} } ], [ reverse @names[ $N - 10 .. $N - 1 ] ],
          '... the first page: the newest ten, newest first (Pulp\'s default)');
like($l->{next}, qr/offset=10/, '... and a next page');

$l = $t->get("$REMOTES?limit=5&offset=1000&ordering=pulp_created")->{json};
is_deeply([ map { $_->{name} } @{ $l->{results} } ], [ @names[ 1000 .. 1004 ] ],
          'ordering=pulp_created, offset 1000: the 1001st to the 1005th made');

$l = $t->get("$REMOTES?name=remote-01234")->{json};
is_deeply([ $l->{count}, map { $_->{name} } @{ $l->{results} } ], [ 1, 'remote-01234' ],
          'name=: the one remote');
is($t->get("$REMOTES?name=remote-01234&offset=1")->{json}{count}, 1, '... its count past the page');
is($t->get("$REMOTES?name=none")->{json}{count}, 0, 'name= of none: count 0');

$l = $t->get("$REMOTES?name__startswith=remote-0199&ordering=-name&limit=3")->{json};
is_deeply([ $l->{count}, map { $_->{name} } @{ $l->{results} } ],
          [ 10, 'remote-01999', 'remote-01998', 'remote-01997' ],
          'another filter and ordering: still answered (a walk)');

# a few distributions, each made through a task
my @tasks = map { task_of($t, $t->post($DISTS, { name => "d$_", base_path => "d$_",
                                                 remote => $l->{results}[0]{pulp_href} })) } 1 .. 12;
$l = $t->get("$TASKS?limit=10")->{json};
is($l->{count}, 12, 'tasks: their count');
is_deeply([ map { $_->{pulp_href} } @{ $l->{results} } ], [ reverse map { $_->{pulp_href} } @tasks[2 .. 11] ],
          '... the first page: the newest ten, newest first');

# memory: many first pages (and deep ones) leave a worker as it was
my ($worker) = @{ $t->worker_pids };
$t->get("$REMOTES?limit=100") for 1 .. 5;
my $before = vm_kib($worker, 'VmHWM');
for my $i (1 .. 50) {
    $t->get("$REMOTES?limit=100");
    $t->get("$REMOTES?limit=10&offset=" . ($i * 30));
    $t->get("$TASKS?limit=100");
}
my $grew = vm_kib($worker, 'VmHWM') - $before;
SKIP: {
    skip PT::Pull::memory_unmeasurable(), 1 if PT::Pull::memory_unmeasurable();
    cmp_ok($grew, '<', 2048, "150 list requests: the worker's peak memory grew by less than 2 MiB ($grew KiB)");
}

$t->stop;

done_testing;
