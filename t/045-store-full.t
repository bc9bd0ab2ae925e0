#!/usr/bin/perl

# A metadata store failure (the LMDB map is full): 500 with a JSON detail,
# the error logged with its cause, nothing half-written, reads still work,
# and a larger map_size taken on reload makes room again.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf(workers => 2, store_args => ' map_size=1m'))->start;
$t->allow_log(qr/MDB_MAP_FULL/);

my $pad = 'x' x 1000;
my ($r, @made);
for my $i (1 .. 2000) {
    $r = $t->post($REMOTES, { name => "r$i", url => 'https://x.example', pulp_labels => { pad => $pad } });
    last unless $r->{status} == 201;
    push @made, $r->{json};
}
my $failed = 'r' . (@made + 1);
cmp_ok(scalar @made, '>', 10, 'some remotes fit in 1m');
is_json_status($r, 500, undef, 'store full: 500 with JSON');
like($r->{json}{detail} // '', qr/\S/, 'store full: a detail');
like($t->error_log, qr/MDB_MAP_FULL|map.?size/i, 'store full: the cause is in the error log');

$r = $t->get("$REMOTES?limit=1");
is_json_status($r, 200, undef, 'store full: lists still work');
is($r->{json}{count}, scalar @made, 'store full: the failed create left nothing');
is_deeply($t->get($made[-1]{pulp_href})->{json}, $made[-1], 'store full: objects still readable');
is($t->get("$REMOTES?name=$failed")->{json}{count}, 0, "store full: no $failed");

$t->set_conf(admin_conf(workers => 2, store_args => ' map_size=8m'));
$t->reload;
$r = $t->post($REMOTES, { name => $failed, url => 'https://x.example', pulp_labels => { pad => $pad } });
is($r->{status}, 201, "reload with map_size=8m: $failed can be created now");
is($t->get($REMOTES)->{json}{count}, @made + 1, 'reload with map_size=8m: everything there');
$r = $t->post($REMOTES, { name => 'more', url => 'https://x.example', pulp_labels => { pad => $pad } });
is($r->{status}, 201, 'reload with map_size=8m: more creates');
is(task_of($t, $t->delete($made[0]{pulp_href}))->{state}, 'completed', 'and deletes');

$t->stop;
done_testing;
