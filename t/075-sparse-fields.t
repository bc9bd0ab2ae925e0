#!/usr/bin/perl

# Pulp's sparse fieldsets: ?fields= keeps only the keys named (comma
# separated, or the parameter repeated) of every object answered, each
# result of a list or the object of a detail view; ?exclude_fields= drops
# the keys named; a list's count, next and previous stay. Everywhere:
# remotes, distributions, tasks, content, status.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my $remote = create_remote($t, name => 'one', url => 'https://r1.example');
create_remote($t, name => 'two', url => 'https://r2.example');
my $dist = create_dist($t, name => 'd', base_path => 'd', remote => $remote->{pulp_href});

sub keys_sorted { [ sort keys %{ $_[0] } ] }

my $l = $t->get("$REMOTES?fields=name,pulp_href")->{json};
is($l->{count}, 2, 'fields= on a list: the count stays');
is_deeply([ map { keys_sorted($_) } @{ $l->{results} } ], [ ([ 'name', 'pulp_href' ]) x 2 ],
          '... each result has the fields named, and only those');
is_deeply([ map { $_->{name} } @{ $l->{results} } ], [ 'two', 'one' ], '... with their values, in the order of the list');

$l = $t->get("$REMOTES?fields=name&fields=url&limit=1")->{json};
is_deeply(keys_sorted($l->{results}[0]), [ 'name', 'url' ], 'fields repeated: each one counts');
like($l->{next} // '', qr/offset=1/, '... next stays');

my %all = %{ $t->get($remote->{pulp_href})->{json} };
my $r = $t->get("$remote->{pulp_href}?exclude_fields=url,pulp_labels");
is_deeply(keys_sorted($r->{json}), [ grep { $_ ne 'url' && $_ ne 'pulp_labels' } sort keys %all ],
          'exclude_fields= on a detail view: all but those');
$r = $t->get("$remote->{pulp_href}?fields=name,nothing");
is_deeply($r->{json}, { name => 'one' }, 'fields= naming an unknown field: ignored');

$r = $t->get("$DISTS?fields=base_path&exclude_fields=base_path")->{json};
is_deeply($r->{results}, [ {} ], 'both: a field named in both is excluded');

$l = $t->get("$TASKS?fields=state")->{json};
is_deeply([ map { keys_sorted($_) } @{ $l->{results} } ], [ ([ 'state' ]) x $l->{count} ], 'tasks: fields=');
is_deeply(keys_sorted($t->get("$API/status/?fields=versions")->{json}), [ 'versions' ], 'status: fields=');
is($t->get("$REMOTES?fields=")->{json}{results}[0]{url}, 'https://r2.example', 'fields= empty: everything');

$t->stop;

done_testing;
