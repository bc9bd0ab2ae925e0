#!/usr/bin/perl

# Pulp's generic lists where pulp-cli calls them: /remotes/ and
# /repositories/ list the objects of every type, which here is one type
# each, with their own hrefs; they take the lists' filters, pages and
# sparse fields, hold no objects of their own, and are read-only.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my @remotes = map { create_remote($t, name => "r$_", url => "https://r$_.example") } 1 .. 3;

my $l = $t->get("$API/remotes/")->{json};
is($l->{count}, 3, '/remotes/: every remote');
is_deeply([ map { $_->{pulp_href} } @{ $l->{results} } ], [ reverse map { $_->{pulp_href} } @remotes ],
          '... with their pull-through hrefs, newest first');
is_deeply($t->get("$API/remotes/?name=r2&fields=name")->{json}{results}, [ { name => 'r2' } ],
          '... filters and sparse fields as any list');
is($t->get("$API/remotes/?limit=1")->{json}{next} =~ /offset=1/ ? 1 : 0, 1, '... pages');
is($t->get("$API/remotes")->{status}, 200, '... the trailing slash optional');

my $id = ($remotes[0]{pulp_href} =~ m{/([^/]+)/$})[0];
is($t->get("$API/remotes/$id/")->{status}, 404, 'no objects of its own: /remotes/<id>/ is 404');
is($t->post("$API/remotes/", { name => 'x', url => 'https://x.example' })->{status}, 405,
   'read-only: POST is 405');

$l = $t->get("$API/repositories/")->{json};
is_deeply([ $l->{count}, $l->{results} ], [ 0, [] ], '/repositories/: no pull, no repository');

$t->stop;

done_testing;
