#!/usr/bin/perl

# Pulp's container namespaces, read-only: a pull that creates a repository
# under a pull-through distribution makes the first component of its
# base_path a namespace, as Pulp does. Listed in the order of names, each
# once, with Pulp's shape; read by href; filtered by name=; never written.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $NS = "$API/pulp_container/namespaces/";
my $ACCEPT = $PT::Images::ACCEPT;
# derived ids: a UUID of version 5's layout, as content units have
my $ID_RE = qr/[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

my $reg = PT::Registry->new->start;
PT::Images::seed($reg, 'hello');

my $t = PT::Nginx->new(conf => cache_conf())->start;
setup_cache($t, $reg->url, base_path => 'team/hub', name => 'team-hub');
setup_cache($t, $reg->url, base_path => 'team/other', name => 'team-other');
setup_cache($t, $reg->url, base_path => 'alpha', name => 'alpha');

is_deeply(list_all($t, $NS), [], 'no pull yet: no namespace');

sub pull { $t->get("/v2/$_[0]/library/hello/manifests/1.0", headers => { Accept => $ACCEPT })->{status} }

is(pull('team/hub'), 200, 'a pull through team/hub');
my $l = list_all($t, $NS);
is_deeply([ map { $_->{name} } @$l ], [ 'team' ], '... makes the namespace team');
like($l->[0]{pulp_href}, qr{^\Q$NS\E$ID_RE/$}, '... with an href');
like($l->[0]{prn}, qr/^prn:container\.containernamespace:$ID_RE$/, '... a prn');
like($l->[0]{pulp_created}, $TS_RE, '... and pulp_created');

is(pull('team/other'), 200, 'a pull through team/other');
is(pull('alpha'), 200, 'and through alpha');
$l = list_all($t, $NS);
is_deeply([ map { $_->{name} } @$l ], [ 'alpha', 'team' ], 'namespaces: each once, in the order of names');

my $team = (grep { $_->{name} eq 'team' } @$l)[0];
is_deeply($t->get($team->{pulp_href})->{json}, $team, 'a namespace reads by its href');
is($t->get("${NS}00000000-0000-5000-8000-000000000000/")->{status}, 404, 'an unknown one: 404');
is_deeply([ map { $_->{name} } @{ $t->get("$NS?name=alpha")->{json}{results} } ], [ 'alpha' ], 'name=: that one');
is($t->get("$NS?name=zzz")->{json}{count}, 0, 'name= of none: count 0');
is($t->get("$NS?limit=1&offset=1")->{json}{results}[0]{name}, 'team', 'pages');
is($t->post($NS, { name => 'x' })->{status}, 405, 'read-only: POST is 405');

# Pulp's generic list of repositories: the same ones
is_deeply(list_all($t, "$API/repositories/"), list_all($t, "$API/repositories/container/container/"),
          '/repositories/ lists the repositories the pulls made, as their own list does');

$t->stop;

done_testing;
