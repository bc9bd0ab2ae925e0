#!/usr/bin/perl

# nginx access control in front of the admin API: auth_basic, allow/deny,
# satisfy any. A refused request changes nothing.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;
use PT::Util qw(need_tools);

need_tools('openssl');

my $auth = <<'EOF';
            auth_basic "Pulp";
            auth_basic_user_file %%TESTDIR%%/htpasswd;
EOF

my $t = PT::Nginx->new(conf => admin_conf(location => $auth, servers => <<"EOF"));
    server {
        listen 127.0.0.1:%%PORT2%%;
        location /pulp/api/v3/ {
            deny all;
            pullthrough_admin;
        }
    }
    server {
        listen 127.0.0.1:%%PORT3%%;
        location /pulp/api/v3/ {
            allow 127.0.0.1;
            deny all;
            pullthrough_admin;
        }
    }
    server {
        listen 127.0.0.1:%%PORT4%%;
        location /pulp/api/v3/ {
            satisfy any;
            allow 192.0.2.1;
            deny all;
$auth
            pullthrough_admin;
        }
    }
EOF

my $hash = `openssl passwd -apr1 -salt pt0salt 's3cret pass'`;
die "openssl passwd failed\n" if $? || !$hash;
open my $fh, '>', $t->dir . '/htpasswd' or die;
print $fh "admin:$hash";
close $fh;

$t->start;

my @good = (auth => [ 'admin', 's3cret pass' ]);
my $count = sub { $t->get($REMOTES, @good)->{json}{count} };


# auth_basic

my $r = $t->get($REMOTES);
is($r->{status}, 401, 'no credentials: 401');
like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="Pulp"/, 'WWW-Authenticate');
is($t->get($REMOTES, auth => [ 'admin', 'wrong' ])->{status}, 401, 'wrong password: 401');
is($t->get($REMOTES, auth => [ 'nobody', 's3cret pass' ])->{status}, 401, 'unknown user: 401');

$r = $t->get($REMOTES, @good);
is_json_status($r, 200, undef, 'right credentials: 200');
is($r->{json}{count}, 0, 'empty list');

is($t->post($REMOTES, { name => 'anon', url => 'https://x.example' })->{status}, 401, 'POST without credentials: 401');
is($t->post($REMOTES, { name => 'anon', url => 'https://x.example' }, auth => [ 'admin', 'x' ])->{status}, 401,
   'POST with a wrong password: 401');
is($count->(), 0, 'nothing created');

$r = $t->post($REMOTES, { name => 'docker', url => 'https://registry-1.docker.io' }, @good);
is($r->{status}, 201, 'POST with credentials: 201');
my $href = $r->{json}{pulp_href};

is($t->patch($href, { url => 'https://evil.example' })->{status}, 401, 'PATCH without credentials: 401');
is($t->put($href, { name => 'x', url => 'https://evil.example' })->{status}, 401, 'PUT without credentials: 401');
is($t->delete($href)->{status}, 401, 'DELETE without credentials: 401');
is($t->post($DISTS, { name => 'd', base_path => 'd', remote => $href })->{status}, 401,
   'POST distribution without credentials: 401');
is($t->get($href)->{status}, 401, 'GET object without credentials: 401');
is($t->head($href)->{status}, 401, 'HEAD without credentials: 401');
is($t->get($TASKS)->{status}, 401, 'GET tasks without credentials: 401');
is($t->get($href, @good)->{json}{url}, 'https://registry-1.docker.io', 'refused requests changed nothing');
is($t->get($DISTS, @good)->{json}{count}, 0, 'no distribution created');

my $task = task_of($t, $t->patch($href, { url => 'https://quay.io' }, @good), @good);
is($task->{state}, 'completed', 'PATCH with credentials: 202, task completed');
is($t->get($task->{pulp_href}, @good)->{status}, 200, 'GET task with credentials');
is($t->get($href, @good)->{json}{url}, 'https://quay.io', 'PATCH applied');


# deny all

for my $m (qw(GET HEAD POST PUT PATCH DELETE)) {
    my $path = $m =~ /^(?:POST|GET|HEAD)$/ ? $REMOTES : $href;
    my $r = $t->request($m, $path, port => 2, $m =~ /^P/ ? (json => { name => 'denied', url => 'https://x.example' }) : ());
    is($r->{status}, 403, "deny all: $m 403");
}
is($count->(), 1, 'deny all: nothing created');
is($t->get($href, @good)->{json}{url}, 'https://quay.io', 'deny all: nothing changed');


# allow 127.0.0.1; deny all

$r = $t->get($REMOTES, port => 3);
is_json_status($r, 200, undef, 'allow 127.0.0.1: 200');
is($r->{json}{count}, 1, 'allow 127.0.0.1: same store');


# satisfy any: the address is not allowed, credentials are enough

is($t->get($REMOTES, port => 4)->{status}, 401, 'satisfy any: no credentials: 401');
is($t->get($REMOTES, port => 4, @good)->{status}, 200, 'satisfy any: credentials: 200');
is($t->post($REMOTES, { name => 'x', url => 'https://x.example' }, port => 4)->{status}, 401,
   'satisfy any: POST without credentials: 401');
is($count->(), 1, 'satisfy any: nothing created');

$t->stop;
done_testing;
