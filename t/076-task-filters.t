#!/usr/bin/perl

# The task list's filters, as pulp-cli's "task list" sends them: state=,
# state__in=, created_resources= (a task that created that object),
# name__contains=, and they combine; a filter on an unknown field is
# ignored as before.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my $remote = create_remote($t, name => 'one', url => 'https://r1.example');
my $ok = task_of($t, $t->post($DISTS, { name => 'd1', base_path => 'd1', remote => $remote->{pulp_href} }));
my $ok2 = task_of($t, $t->post($DISTS, { name => 'd2', base_path => 'd2', remote => $remote->{pulp_href} }));
my $del = task_of($t, $t->delete($ok2->{created_resources}[0]));
is_deeply([ map { $_->{state} } $ok, $ok2, $del ], [ ('completed') x 3 ], 'three tasks, completed');

sub hrefs { [ sort map { $_->{pulp_href} } @{ list_all($t, $_[0]) } ] }

my $all = hrefs($TASKS);
ok(@$all >= 3, 'the task list has them (' . @$all . ')');
is_deeply(hrefs("$TASKS?state=completed"), $all, 'state=completed: all of them');
is_deeply(hrefs("$TASKS?state=failed"), [], 'state=failed: none');
is_deeply(hrefs("$TASKS?state__in=failed,completed"), $all, 'state__in=failed,completed: all');
is_deeply(hrefs("$TASKS?state__in=waiting,running"), [], 'state__in=waiting,running: none');
is_deeply(hrefs("$TASKS?created_resources=$ok->{created_resources}[0]"), [ $ok->{pulp_href} ],
          'created_resources=<href>: the task that created it');
is_deeply(hrefs("$TASKS?created_resources=$ok->{created_resources}[0]&state=failed"), [],
          '... combined with state=failed: none');
is($t->get("$TASKS?created_resources=/nothing/&limit=1")->{json}{count}, 0, 'an href no task created: count 0');
is_deeply(hrefs("$TASKS?unknown_field=1"), $all, 'an unknown filter: ignored');

$t->stop;

done_testing;
