#!/usr/bin/perl

# Writes that fail on a full store end their LMDB write transaction. On a
# store whose map is full, deletes, updates and creates each get an answer
# (a 500 with a JSON detail, or success when freed pages suffice), and the
# requests after them still answer: a write that left its transaction open
# would hold the writer lock, and the worker would wait on its own lock
# forever. One worker, so that every request meets that lock.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf(workers => 1, store_args => ' map_size=1m'))->start;
$t->allow_log(qr/MDB_MAP_FULL/);

# fill the map with remotes until a create fails
my $pad = 'x' x 1000;
my (@remotes, $r);
for my $i (1 .. 2000) {
    $r = $t->post($REMOTES, { name => "r$i", url => 'https://x.example', pulp_labels => { pad => $pad } });
    last unless $r->{status} == 201;
    push @remotes, $r->{json};
}
is($r->{status}, 500, 'the map is full: a create fails');
cmp_ok(scalar @remotes, '>', 10, 'after some remotes were made');

# Rounds of writes on the full store: an update that grows a remote, a
# create and a delete. Whichever of their steps hits the full map (a put,
# a delete, the task record, the commit), the next request answers.
my ($answered, $failed, %gone) = (0, 0);
my @ops;
for my $round (1 .. 12) {
    my $x = $remotes[$round];
    my $y = $remotes[-$round];
    push @ops,
        [ update => sub { $t->patch($x->{pulp_href}, { pulp_labels => { pad => 'y' x (700 * $round) } }, timeout => 5) } ],
        [ create => sub { $t->post($REMOTES, { name => "new$round", url => 'https://x.example',
                                               pulp_labels => { pad => 'z' x (400 * $round) } }, timeout => 5) } ],
        [ delete => sub { $gone{$y->{name}} = 1; $t->delete($y->{pulp_href}, timeout => 5) } ];
}

for my $op (@ops) {
    my ($what, $write) = @$op;
    my $res = $write->();
    if ($res->{status} == 599) {
        fail("full store, $what: no answer (the worker waits on its own lock)");
        last;
    }
    $answered++;
    $failed++ if $res->{status} == 500;
    unless ($res->{json} && ($res->{status} == 500 || $res->{status} =~ /^20[12]$/)) {
        fail("full store, $what: $res->{status} $res->{content}");
        last;
    }
    $res = $t->get("$REMOTES?limit=1", timeout => 5);
    unless ($res->{status} == 200) {
        fail("after a $what on a full store, a read: $res->{status}");
        last;
    }
}
is($answered, scalar @ops, 'full store: every update, create and delete answered');
cmp_ok($failed, '>', 0, 'full store: some of them failed on the full map');

# nothing was lost: every remote not asked to go reads back
my $names = { map { $_->{name} => 1 } @{ list_all($t, $REMOTES) } };
is_deeply([ grep { !$names->{$_->{name}} && !$gone{$_->{name}} } @remotes ], [],
          'full store: no remote lost');

# a larger map on reload: writes work again
$t->set_conf(admin_conf(workers => 1, store_args => ' map_size=8m'));
$t->reload;
is($t->post($REMOTES, { name => 'after', url => 'https://x.example' }, timeout => 5)->{status}, 201,
   'map_size=8m: creates work again');

$t->stop;
done_testing;
