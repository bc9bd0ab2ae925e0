#!/usr/bin/perl

# Tasks, HEAD, trailing slashes, unknown paths, wrong methods, request body
# limits (413, 411), and GET /v2/.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

# port 1: default body limit (1m) under a tiny client_max_body_size;
# port 2: pullthrough_admin_max_body_size 1k in the location;
# port 3: 2k in the server
my $t = PT::Nginx->new(conf => admin_conf(
    server  => 'client_max_body_size 100;',
    servers => <<'EOF'))->start;
    server {
        listen 127.0.0.1:%%PORT2%%;
        location /pulp/api/v3/ {
            pullthrough_admin;
            pullthrough_admin_max_body_size 1k;
        }
    }
    server {
        listen 127.0.0.1:%%PORT3%%;
        pullthrough_admin_max_body_size 2k;
        location /pulp/api/v3/ {
            pullthrough_admin;
        }
    }
EOF

my $notfound = { detail => 'Not found.' };

my $remote = create_remote($t, name => 'docker', url => 'https://registry-1.docker.io');
my $r = $t->post($DISTS, { name => 'docker-cache', base_path => 'docker-cache', remote => $remote->{pulp_href} });
my $task = task_of($t, $r);
my $dist = $t->get($task->{created_resources}[0])->{json};


# tasks

$r = $t->get($task->{pulp_href});
is_json_status($r, 200, undef, 'GET task');
ok(!grep({ !exists $task->{$_} } @TASK_KEYS), 'task keys') or diag(dump_json($task));
like($task->{pulp_href}, qr{^\Q$TASKS\E$UUID_RE/$}, 'task pulp_href');
is($task->{state}, 'completed', 'task state');
is_deeply($task->{created_resources}, [ $dist->{pulp_href} ], 'created_resources');
like($task->{$_}, $TS_RE, "task $_") for qw(pulp_created pulp_last_updated started_at finished_at unblocked_at);

(my $noslash = $task->{pulp_href}) =~ s{/$}{};
is_json_status($t->get($noslash), 200, $task, 'GET task without trailing slash');
$r = $t->head($task->{pulp_href});
ok($r->{status} == 200 && $r->{content} eq '' && ($r->{headers}{'content-type'} // '') =~ m{^application/json},
   'HEAD task') or diag(dump_json($r));
is_json_status($t->get($TASKS . uuid4() . '/'), 404, $notfound, 'unknown task');
is_json_status($t->get($TASKS . 'x/'), 404, $notfound, 'invalid task id');

my $dtask = task_of($t, $t->delete($dist->{pulp_href}));
is_deeply($dtask->{created_resources}, [], 'delete task created nothing');
isnt($dtask->{pulp_href}, $task->{pulp_href}, 'every task has its own id');


# HEAD and trailing slashes

for my $path ($REMOTES, $DISTS, $TASKS, $remote->{pulp_href}) {
    my $h = $t->head($path);
    my $g = $t->get($path);
    ok($h->{status} == 200 && $h->{content} eq '' && ($h->{headers}{'content-type'} // '') =~ m{^application/json},
       "HEAD $path: 200, JSON, no body") or diag(dump_json($h));
    (my $p = $path) =~ s{/$}{};
    is_json_status($t->get($p), 200, $g->{json}, "GET $p (no trailing slash)");
}
is($t->head($REMOTES . uuid4() . '/')->{status}, 404, 'HEAD unknown id: 404');

(my $rl = $REMOTES) =~ s{/$}{};
$r = $t->post($rl, { name => 'noslash', url => 'https://x.example' });
is_json_status($r, 201, undef, 'POST list without trailing slash');
(my $rh = $r->{json}{pulp_href}) =~ s{/$}{};
is(task_of($t, $t->patch($rh, { url => 'https://y.example' }))->{state}, 'completed', 'PATCH without trailing slash');
is(task_of($t, $t->delete($rh))->{state}, 'completed', 'DELETE without trailing slash');

is_json_status($t->get("$remote->{pulp_href}?foo=bar"), 200, $remote, 'a query string that names no field or option is ignored on an object');


# unknown paths

for my $path ("$API/", "$API/foo/", "$API/remotes/container/",
              "$API/remotes/container/containerx/", "$API/remotes/container/pull-throughx/",
              "$API/remotes/container/pull-through/$remote->{pulp_href}",
              "$remote->{pulp_href}extra/", "$API/distributions/container/nope/",
              "$API/distributions/x/", "$API/tasks/x/y/", "$API/statuses/",
              "$API/remotes/$remote->{pulp_href}", "$API/repositories/x/",
              "$API/remotes/container/pull-through/x/y/") {
    is_json_status($t->get($path), 404, $notfound, "GET $path: 404");
}
is_json_status($t->post("$API/foo/", { name => 'x' }), 404, $notfound, 'POST unknown path: 404');
is_json_status($t->delete("$API/remotes/container/"), 404, $notfound, 'DELETE unknown path: 404');


# wrong methods

my %allowed = (
    $REMOTES                         => [ qw(GET POST) ],
    $DISTS                           => [ qw(GET POST) ],
    $remote->{pulp_href}             => [ qw(GET PUT PATCH DELETE) ],
    $TASKS                           => [ qw(GET) ],
    $task->{pulp_href}               => [ qw(GET) ],
);
for my $path (sort keys %allowed) {
    my %ok = map { $_ => 1 } @{ $allowed{$path} }, 'HEAD';
    for my $m (grep { !$ok{$_} } qw(GET POST PUT PATCH DELETE)) {
        my $r = $t->request($m, $path, $m =~ /^P/ ? (json => { name => 'x' }) : ());
        is_json_status($r, 405, { detail => "Method \"$m\" not allowed." }, "$m $path: 405");
        my %allow = map { $_ => 1 } @{ allow_tokens($r) };
        ok(!grep({ !$allow{$_} } @{ $allowed{$path} }) && !$allow{$m},
           "$m $path: Allow lists @{ $allowed{$path} }") or diag('Allow: ' . ($r->{headers}{allow} // '-'));
    }
}
is_json_status($t->request('OPTIONS', $REMOTES), 405, { detail => 'Method "OPTIONS" not allowed.' },
               'OPTIONS: 405');
is_json_status($t->request('FOO', $REMOTES), 405, { detail => 'Method "FOO" not allowed.' },
               'unknown method: 405');
is($t->get($REMOTES)->{json}{count}, 1, 'refused methods changed nothing');


# request body limits

my $body = sub {
    my ($name, $size) = @_;
    my $json = qq({"name": "$name", "url": "https://x.example"});
    return $json . ' ' x ($size - length $json);
};

$r = $t->post($REMOTES, $body->('at-1m', 1024 * 1024));
is_json_status($r, 201, undef, 'default limit: a body of 1m is taken, client_max_body_size does not apply');
$r = $t->post($REMOTES, $body->('over-1m', 1024 * 1024 + 1));
is_json_status($r, 413, { detail => 'Request body is larger than 1048576 bytes.' }, 'default limit: 1m + 1: 413');

$r = $t->post($REMOTES, $body->('at-1k', 1024), port => 2);
is_json_status($r, 201, undef, 'pullthrough_admin_max_body_size 1k: 1024 bytes taken');
for my $m (qw(POST PUT PATCH)) {
    my $path = $m eq 'POST' ? $REMOTES : $remote->{pulp_href};
    $r = $t->request($m, $path, body => $body->('over-1k', 1025), port => 2);
    is_json_status($r, 413, { detail => 'Request body is larger than 1024 bytes.' }, "$m 1025 bytes: 413");
}
is($t->post($REMOTES, $body->('at-2k', 2048), port => 3)->{status}, 201,
   'pullthrough_admin_max_body_size 2k in server: 2048 bytes taken');
is_json_status($t->post($REMOTES, $body->('over-2k', 2049), port => 3), 413,
               { detail => 'Request body is larger than 2048 bytes.' }, 'in server: 2049 bytes: 413');
$r = $t->raw("POST $REMOTES HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             . "Content-Length: 100000000\r\nConnection: close\r\n\r\n", port => 2, timeout => 5);
is_json_status($r, 413, { detail => 'Request body is larger than 1024 bytes.' },
               '413 without waiting for the body');
ok(!grep({ $_->{name} =~ /^over-/ } @{ list_all($t, $REMOTES) }), 'bodies over the limit created nothing');

for my $m (qw(POST PUT PATCH)) {
    my $path = $m eq 'POST' ? $REMOTES : $remote->{pulp_href};
    $r = $t->request($m, $path, body => '{"name": "chunked", "url": "https://x.example"}', chunked => 1,
                     headers => { 'Content-Type' => 'application/json' });
    is_json_status($r, 411, { detail => 'A Content-Length header is required.' }, "$m chunked: 411");
}
ok(!grep({ $_->{name} eq 'chunked' } @{ list_all($t, $REMOTES) }), 'chunked bodies created nothing');

$r = $t->post($REMOTES, '', headers => { 'Content-Type' => 'application/json' });
ok($r->{status} == 400 && ref $r->{json} eq 'HASH', 'POST with an empty body: 400 JSON') or diag(dump_json($r));


# pullthrough_admin_max_body_size at the http level
my $t2 = PT::Nginx->new(conf => admin_conf(http => 'pullthrough_admin_max_body_size 512;'))->start;
is($t2->post($REMOTES, $body->('at-512', 512))->{status}, 201, 'pullthrough_admin_max_body_size 512 in http: 512 taken');
is_json_status($t2->post($REMOTES, $body->('over-512', 513)), 413,
               { detail => 'Request body is larger than 512 bytes.' }, 'in http: 513 bytes: 413');
$t2->stop;


# registry root

$r = $t->get('/v2/');
is_json_status($r, 200, {}, 'GET /v2/: 200 {}');
is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0', 'GET /v2/: API version header');

$t->stop;
done_testing;
