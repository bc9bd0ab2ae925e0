#!/usr/bin/perl

# Pull-through distributions: create (a task), read, update, delete,
# base_path rules, uniqueness and overlaps, the remote reference, and
# deleting a remote that a distribution uses.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my $docker = create_remote($t, name => 'docker', url => 'https://registry-1.docker.io');
my $quay = create_remote($t, name => 'quay', url => 'https://quay.io');
my $count = sub { $t->get($DISTS)->{json}{count} };
sub is_bool { JSON::PP::is_bool($_[0]) }


# create

my $r = $t->post($DISTS, { name => 'docker-cache', base_path => 'docker-cache',
                           remote => $docker->{pulp_href} });
is_json_status($r, 202, undef, 'create: 202');
is_deeply(keys_of($r->{json}), [ 'task' ], 'create: body is {"task"}');
like($r->{json}{task} // '', qr{^\Q$TASKS\E$UUID_RE/$}, 'task href');

my $task = task_of($t, $r);
ok(!grep({ !exists $task->{$_} } @TASK_KEYS), 'task has the keys of a task')
    or diag(dump_json($task));
is($task->{pulp_href}, $r->{json}{task}, 'task pulp_href');
my ($task_id) = $task->{pulp_href} =~ m{/($UUID_RE)/$};
is($task->{prn}, "prn:core.task:$task_id", 'task prn');
is($task->{state}, 'completed', 'task state completed');
ok(exists $task->{error} && !defined $task->{error}, 'task error null');
like($task->{name} // '', qr/\S/, 'task has a name');
like($task->{$_} // '', $TS_RE, "task $_") for qw(pulp_created pulp_last_updated started_at finished_at unblocked_at);
ok(ts_epoch($task->{finished_at}) >= ts_epoch($task->{started_at}), 'task finished_at >= started_at');
is_deeply([ @{ $task }{qw(child_tasks progress_reports)} ], [ [], [] ], 'task child_tasks, progress_reports []');
is(scalar @{ $task->{created_resources} }, 1, 'task created one resource');
my $href = $task->{created_resources}[0] // '';
like($href, qr{^\Q$DISTS\E$UUID_RE/$}, 'created resource is a distribution href');

$r = $t->get($href);
is_json_status($r, 200, undef, 'GET the distribution');
my $dist = $r->{json};
is_deeply(keys_of($dist), [ sort @DIST_KEYS ], 'exactly the keys of a distribution');
is($dist->{pulp_href}, $href, 'pulp_href');
my ($id) = $href =~ m{/($UUID_RE)/$};
is($dist->{prn}, "prn:container.containerpullthroughdistribution:$id", 'prn');
like($dist->{$_}, $TS_RE, "$_ format") for qw(pulp_created pulp_last_updated);
ok(abs(ts_epoch($dist->{pulp_created}) - time) < 300, 'pulp_created is now, in UTC');
is($dist->{name}, 'docker-cache', 'name');
is($dist->{base_path}, 'docker-cache', 'base_path');
is($dist->{remote}, $docker->{pulp_href}, 'remote is the href');
is_deeply($dist->{distributions}, [], 'distributions []');
ok(is_bool($dist->{private}) && !$dist->{private}, 'private false');
ok(is_bool($dist->{hidden}) && !$dist->{hidden}, 'hidden false');
ok(exists $dist->{description} && !defined $dist->{description}, 'description null');
ok(exists $dist->{content_guard} && !defined $dist->{content_guard}, 'content_guard null');
is_deeply($dist->{pulp_labels}, {}, 'pulp_labels {}');

(my $noslash = $href) =~ s{/$}{};
is_json_status($t->get($noslash), 200, $dist, 'GET without trailing slash');
$r = $t->head($href);
ok($r->{status} == 200 && $r->{content} eq '', 'HEAD: 200 without body') or diag(dump_json($r));

# every field, an absolute remote URL, and read-only fields ignored
my $abs = $t->base_url . $quay->{pulp_href};
my $q = create_dist($t, name => 'quay-cache', base_path => 'quay/cache', remote => $abs,
                    private => 'true', hidden => JSON::PP::true, description => 'Quay mirror',
                    pulp_labels => { team => 'infra' }, content_guard => undef,
                    distributions => [ '/x/' ], pulp_href => '/x/');
is($q->{remote}, $quay->{pulp_href}, 'absolute remote URL accepted, shown as href');
ok($q->{private} && is_bool($q->{private}), 'private "true" -> true');
ok($q->{hidden} && is_bool($q->{hidden}), 'hidden true');
is($q->{description}, 'Quay mirror', 'description');
is_deeply($q->{pulp_labels}, { team => 'infra' }, 'pulp_labels');
is_deeply($q->{distributions}, [], 'distributions in input ignored');
like($q->{pulp_href}, qr{^\Q$DISTS\E$UUID_RE/$}, 'pulp_href in input ignored');

my $other = create_dist($t, name => 'other', base_path => 'other',
                        remote => "https://registry.example:8443$docker->{pulp_href}");
is($other->{remote}, $docker->{pulp_href}, 'absolute https:// remote URL with another host accepted');


# input errors

my $before = $count->();
my $req = 'This field is required.';
my %ok = (name => 'x', base_path => 'x', remote => $docker->{pulp_href});

is_field_errors($t->post($DISTS, {}), { name => $req, base_path => $req, remote => $req },
                '{}: name, base_path and remote required');
for my $f (qw(name base_path remote)) {
    my %in = %ok;
    delete $in{$f};
    is_field_errors($t->post($DISTS, \%in), { $f => $req }, "$f required");
    is_field_errors($t->post($DISTS, { %ok, $f => undef }), { $f => 'This field may not be null.' },
                    "$f null");
}
is_field_errors($t->post($DISTS, { %ok, name => '' }), { name => 'This field may not be blank.' }, 'name blank');
is_field_errors($t->post($DISTS, { %ok, base_path => '' }), { base_path => 'This field may not be blank.' },
                'base_path blank');
is_field_errors($t->post($DISTS, { %ok, name => 5 }), { name => 'Not a valid string.' }, 'name a number');
is_field_errors($t->post($DISTS, { %ok, base_path => 5 }), { base_path => 'Not a valid string.' },
                'base_path a number');
is_field_errors($t->post($DISTS, { %ok, name => 'docker-cache' }), { name => 'This field must be unique.' },
                'name unique');
is_field_errors($t->post($DISTS, { %ok, base_path => 'docker-cache' }),
                { base_path => 'This field must be unique.' }, 'base_path unique');

my $nomatch = 'Invalid hyperlink - No URL match.';
my $noobj = 'Invalid hyperlink - Object does not exist.';
for my $bad ('garbage', '/pulp/api/v3/remotes/container/container/' . uuid4() . '/',
             'http://x.example/somewhere/else/') {
    is_field_errors($t->post($DISTS, { %ok, remote => $bad }), { remote => $nomatch }, "remote $bad");
}
is_field_errors($t->post($DISTS, { %ok, remote => $REMOTES . uuid4() . '/' }), { remote => $noobj },
                'remote that does not exist');
is_field_errors($t->post($DISTS, { %ok, remote => $dist->{pulp_href} }), { remote => undef },
                'remote is the href of a distribution');
is_field_errors($t->post($DISTS, { %ok, remote => 5 }), { remote => undef }, 'remote a number');
is_field_errors($t->post($DISTS, { %ok, remote => $REMOTES . 'not-a-uuid/' }), { remote => undef },
                'remote with an invalid id');
is_field_errors($t->post($DISTS, { %ok, content_guard => '/pulp/api/v3/contentguards/core/rbac/' . uuid4() . '/' }),
                { content_guard => 'Content guards are not supported.' }, 'content_guard not null');
is_field_errors($t->post($DISTS, { %ok, private => 'maybe' }), { private => 'Must be a valid boolean.' },
                'private "maybe"');
is_field_errors($t->post($DISTS, { %ok, hidden => 'maybe' }), { hidden => 'Must be a valid boolean.' },
                'hidden "maybe"');
is_field_errors($t->post($DISTS, { %ok, description => 5 }), { description => 'Not a valid string.' },
                'description a number');
is_field_errors($t->post($DISTS, { %ok, pulp_labels => [] }), { pulp_labels => undef }, 'pulp_labels a list');
is_field_errors($t->post($DISTS, { %ok, repository => 'x' }), { repository => 'Unexpected field' },
                'unknown field');
is_field_errors($t->post($DISTS, { name => '', base_path => '/x', remote => 'x', foo => 1 }),
                { name => undef, base_path => undef, remote => undef, foo => undef }, 'every error at once');
$r = $t->post($DISTS, '{"name": ');
ok($r->{status} == 400 && ($r->{json}{detail} // '') =~ /^JSON parse error - /, 'body not JSON')
    or diag(dump_json($r));
is_json_status($t->post($DISTS, '[]'), 400,
               { non_field_errors => [ 'Invalid data. Expected a dictionary, but got list.' ] }, 'body a list');


# base_path rules

for my $bp ('/a', 'a/', 'a//b', 'A', 'Docker', 'a b', 'a..b', 'a___b', '-a', 'a-', '.a', 'a.',
            '_a', 'a_', 'a/_b', 'a._b', 'a?b', 'a:b', "a\nb", "caf\x{e9}", '..', 'a/../b',
            'a' x 256, join('/', ('abcdefgh') x 32)) {
    is_field_errors($t->post($DISTS, { %ok, base_path => $bp }), { base_path => undef },
                    'base_path ' . dump_json(length $bp > 40 ? substr($bp, 0, 20) . '...' . length($bp) : $bp)
                    . ' refused');
}
is($count->(), $before, 'failed creates created nothing');

$r = $t->post($DISTS, { name => 'nul-test', base_path => "nulpath\x00x", remote => $docker->{pulp_href} });
is_field_errors($r, { base_path => undef }, 'base_path with a NUL refused (not cut at the NUL)');

for my $bp ('a', '0', 'a.b', 'a_b', 'a__b', 'a-b', 'a---b', 'library/nginx', 'a/b/c/d',
            'x1.y2_z3__w4-v5', 'a' x 255, join('/', ('abcdefg') x 32)) {
    my $r = $t->post($DISTS, { %ok, base_path => $bp });
    my $ok = $r->{status} == 202;
    if ($ok) {
        my $task = task_of($t, $r);
        my $d = $t->get($task->{created_resources}[0] // '/')->{json} || {};
        $ok = ($d->{base_path} // '') eq $bp;
        $ok &&= task_of($t, $t->delete($d->{pulp_href}))->{state} eq 'completed';
    }
    ok($ok, 'base_path ' . dump_json(length $bp > 40 ? length($bp) . ' chars' : $bp) . ' accepted')
        or diag(dump_json($r));
}


# overlaps

my $ov = sub { "Overlaps with existing distribution \"$_[0]\"." };
is_field_errors($t->post($DISTS, { %ok, base_path => 'docker-cache/library' }),
                { base_path => $ov->('docker-cache') }, 'base_path under an existing one');
is_field_errors($t->post($DISTS, { %ok, base_path => 'docker-cache/library/nginx' }),
                { base_path => $ov->('docker-cache') }, 'base_path two levels under an existing one');
is_field_errors($t->post($DISTS, { %ok, base_path => 'quay' }),
                { base_path => $ov->('quay-cache') }, 'base_path above an existing one');
for my $bp (qw(dock docker docker-cachex docker-cache2/x quay-cache quay/cache2 quay/cach)) {
    my $d = eval { create_dist($t, %ok, name => "n-$bp", base_path => $bp) };
    ok($d && $d->{base_path} eq $bp, "base_path $bp is no overlap") or diag($@);
}
is_field_errors($t->post($DISTS, { %ok, base_path => 'dock/x' }),
                { base_path => $ov->('n-dock') }, 'overlap names the right distribution');


# PATCH and PUT

my $orig = $t->get($href)->{json};
$task = task_of($t, $t->patch($href, { description => 'Docker Hub' }));
is($task->{state}, 'completed', 'PATCH: task completed');
is_deeply($task->{created_resources}, [], 'PATCH task created nothing');
my $now = $t->get($href)->{json};
is($now->{description}, 'Docker Hub', 'PATCH description');
is($now->{pulp_created}, $orig->{pulp_created}, 'PATCH kept pulp_created');
ok(ts_epoch($now->{pulp_last_updated}) > ts_epoch($orig->{pulp_last_updated}), 'PATCH moved pulp_last_updated');
is_deeply({ %$now, description => 0, pulp_last_updated => 0 }, { %$orig, description => 0, pulp_last_updated => 0 },
          'PATCH changed nothing else');

$task = task_of($t, $t->put($href, { name => 'docker-cache', base_path => 'docker-cache',
                                     remote => $docker->{pulp_href} }));
is($task->{state}, 'completed', 'PUT resending the same base_path and name');
is($t->get($href)->{json}{description}, 'Docker Hub', 'PUT kept the fields not given');

is_field_errors($t->put($href, { name => 'docker-cache', base_path => 'docker-cache' }),
                { remote => $req }, 'PUT without remote');
is_field_errors($t->put($href, { name => 'docker-cache', remote => $docker->{pulp_href} }),
                { base_path => $req }, 'PUT without base_path');
is_field_errors($t->patch($href, { base_path => 'quay/cache/x' }), { base_path => $ov->('quay-cache') },
                'PATCH base_path to overlap another');
is_field_errors($t->patch($href, { base_path => 'other' }), { base_path => 'This field must be unique.' },
                'PATCH base_path to the one of another');
is_field_errors($t->patch($href, { name => 'other' }), { name => 'This field must be unique.' },
                'PATCH name to the one of another');
is_field_errors($t->patch($href, { remote => $REMOTES . uuid4() . '/' }), { remote => $noobj },
                'PATCH remote that does not exist');
is_field_errors($t->patch($href, { content_guard => 'x' }),
                { content_guard => 'Content guards are not supported.' }, 'PATCH content_guard');
is_field_errors($t->patch($href, { foo => 1 }), { foo => 'Unexpected field' }, 'PATCH unknown field');

task_of($t, $t->patch($href, { base_path => 'docker-cache/v2' }));
is($t->get($href)->{json}{base_path}, 'docker-cache/v2', 'PATCH base_path under its own old one');
task_of($t, $t->patch($href, { base_path => 'docker-cache' }));
is($t->get($href)->{json}{base_path}, 'docker-cache', 'and back');

# GET, modify, PUT back
$now = $t->get($href)->{json};
task_of($t, $t->put($href, { %$now, private => JSON::PP::true, remote => $t->base_url . $quay->{pulp_href} }));
$now = $t->get($href)->{json};
ok($now->{private} && $now->{remote} eq $quay->{pulp_href}, 'GET-modify-PUT') or diag(dump_json($now));


# a remote in use cannot be deleted

my $used = $t->delete($quay->{pulp_href});
is_json_status($used, 409, undef, 'DELETE a remote in use: 409');
like($used->{json}{detail} // '', qr/^Remote "quay" is used by distribution\(s\) .*"docker-cache".*; delete them or point them at another remote first\.$/,
     '409 detail names the distributions');
is($t->get($quay->{pulp_href})->{status}, 200, 'the remote is still there');

my $solo = create_remote($t, name => 'solo', url => 'https://solo.example');
my $sd = create_dist($t, name => 'solo-cache', base_path => 'solo', remote => $solo->{pulp_href});
is_json_status($t->delete($solo->{pulp_href}), 409,
               { detail => 'Remote "solo" is used by distribution(s) "solo-cache"; delete them or point them at another remote first.' },
               '409 body');

task_of($t, $t->patch($sd->{pulp_href}, { remote => $docker->{pulp_href} }));
$task = task_of($t, $t->delete($solo->{pulp_href}));
is($task->{state}, 'completed', 'a remote no longer used can be deleted');


# DELETE

my $n = $count->();
$r = $t->delete($href);
$task = task_of($t, $r);
is_deeply(keys_of($r->{json}), [ 'task' ], 'DELETE: 202 {"task"}');
is($task->{state}, 'completed', 'DELETE task completed');
is_json_status($t->get($href), 404, { detail => 'Not found.' }, 'GET after DELETE: 404');
is_json_status($t->delete($href), 404, { detail => 'Not found.' }, 'DELETE again: 404');
is_json_status($t->patch($href, { description => 'x' }), 404, { detail => 'Not found.' }, 'PATCH after DELETE: 404');
is($count->(), $n - 1, 'list count went down by one');

my $again = eval { create_dist($t, name => 'docker-cache', base_path => 'docker-cache/library',
                               remote => $docker->{pulp_href}) };
ok($again, 'name and a path under the deleted base_path can be used again') or diag($@);

is_json_status($t->get($DISTS . uuid4() . '/'), 404, { detail => 'Not found.' }, 'GET unknown id');
is_json_status($t->get($DISTS . 'nope/'), 404, { detail => 'Not found.' }, 'GET invalid id');
is_json_status($t->delete($DISTS . uuid4() . '/'), 404, { detail => 'Not found.' }, 'DELETE unknown id');

$t->stop;
done_testing;
