#!/usr/bin/perl

# Pull-through remotes: create, read, update (PUT, PATCH), delete, every
# input rule and its error.

use strict;
use warnings;
use utf8;

use Test::More;
use JSON::PP;
use PT::Nginx;
use PT::Pulp;
use PT::Util qw(need_tools);

need_tools('openssl');

my $t = PT::Nginx->new(conf => admin_conf())->start;
my $dir = $t->dir;

my ($ca, undef) = make_cert($dir, 'ca');
my ($ca2, undef) = make_cert($dir, 'ca2');
my ($cert, $key) = make_cert($dir, 'client');
my (undef, $other_key) = make_cert($dir, 'other');

sub trim { my $s = shift; $s =~ s/\s+\z//; $s =~ s/^\s+//; $s }
sub is_bool { JSON::PP::is_bool($_[0]) }
sub hidden { return { map { $_->{name} => $_->{is_set} ? 1 : 0 } @{ $_[0]{hidden_fields} || [] } } }

my $count = sub { $t->get($REMOTES)->{json}{count} };


# minimal create and defaults

my $r = $t->post($REMOTES, { name => 'docker', url => 'https://registry-1.docker.io' });
is_json_status($r, 201, undef, 'create: 201 with JSON');
my $rem = $r->{json};

is_deeply(keys_of($rem), [ sort @REMOTE_KEYS ], 'create: exactly the keys of a remote');
like($rem->{pulp_href}, qr{^\Q$REMOTES\E$UUID_RE/$}, 'pulp_href');
my ($id) = $rem->{pulp_href} =~ m{/($UUID_RE)/$};
is($rem->{prn}, "prn:container.containerpullthroughremote:$id", 'prn');
like($rem->{pulp_created}, $TS_RE, 'pulp_created format');
like($rem->{pulp_last_updated}, $TS_RE, 'pulp_last_updated format');
ok(abs(ts_epoch($rem->{pulp_created}) - time) < 300, 'pulp_created is now, in UTC')
    or diag("pulp_created $rem->{pulp_created}, now " . gmtime);
ok(ts_epoch($rem->{pulp_last_updated}) >= ts_epoch($rem->{pulp_created}),
   'pulp_last_updated >= pulp_created');
is($rem->{name}, 'docker', 'name');
is($rem->{url}, 'https://registry-1.docker.io', 'url');
ok(is_bool($rem->{tls_validation}) && $rem->{tls_validation}, 'tls_validation defaults to true');
is($rem->{policy}, 'on_demand', 'policy defaults to on_demand');
is_deeply($rem->{pulp_labels}, {}, 'pulp_labels defaults to {}');
for my $f (qw(ca_cert client_cert proxy_url download_concurrency max_retries
              total_timeout connect_timeout sock_connect_timeout
              sock_read_timeout headers rate_limit includes excludes)) {
    ok(exists $rem->{$f} && !defined $rem->{$f}, "$f defaults to null");
}
is(scalar @{ $rem->{hidden_fields} }, 5, 'hidden_fields has 5 entries');
is_deeply(hidden($rem), { map { $_ => 0 } @SECRETS }, 'hidden_fields: none set');
ok(!grep({ !is_bool($_->{is_set}) } @{ $rem->{hidden_fields} }), 'hidden_fields is_set are booleans');
ok(!grep({ exists $rem->{$_} } @SECRETS), 'no secret as a key');

$r = $t->get($rem->{pulp_href});
is_json_status($r, 200, $rem, 'GET returns the created remote');

(my $noslash = $rem->{pulp_href}) =~ s{/$}{};
$r = $t->get($noslash);
is_json_status($r, 200, $rem, 'GET without trailing slash');

$r = $t->head($rem->{pulp_href});
ok($r->{status} == 200 && $r->{content} eq ''
   && ($r->{headers}{'content-type'} // '') =~ m{^application/json},
   'HEAD: 200, JSON type, no body') or diag(dump_json($r));


# create with every field

my %full = (
    name => 'full', url => 'https://quay.io/', ca_cert => $ca . $ca2,
    client_cert => $cert, client_key => $key, tls_validation => 'false',
    proxy_url => 'http://proxy.example:3128', proxy_username => 'pu',
    proxy_password => 'pp', username => 'u', password => 'p',
    download_concurrency => '5', max_retries => 3, rate_limit => 0,
    total_timeout => 30.5, connect_timeout => '2.5', sock_connect_timeout => 0,
    sock_read_timeout => 10, headers => [ { 'X-Foo' => 'bar' }, { 'X-Client' => 'pt/1' } ],
    includes => [ 'library/*', 'bitnami/nginx' ], excludes => [],
    pulp_labels => { team => 'infra', env => '' }, policy => 'on_demand',
);
$r = $t->post($REMOTES, \%full);
is_json_status($r, 201, undef, 'create with every field');
my $full = $r->{json};
is_deeply(keys_of($full), [ sort @REMOTE_KEYS ], 'full: exactly the keys of a remote');
is(trim($full->{ca_cert} // ''), trim($ca . $ca2), 'ca_cert (two certificates) kept');
is(trim($full->{client_cert} // ''), trim($cert), 'client_cert kept');
ok(is_bool($full->{tls_validation}) && !$full->{tls_validation}, 'tls_validation "false" -> false');
is($full->{proxy_url}, 'http://proxy.example:3128', 'proxy_url');
is($full->{download_concurrency}, 5, 'download_concurrency "5" -> 5');
like($r->{content}, qr/"download_concurrency"\s*:\s*5\s*[,}]/, 'download_concurrency is a JSON number');
is($full->{max_retries}, 3, 'max_retries');
like($r->{content}, qr/"rate_limit"\s*:\s*0\s*[,}]/, 'rate_limit 0 is a JSON number');
is($full->{total_timeout}, 30.5, 'total_timeout');
like($r->{content}, qr/"connect_timeout"\s*:\s*2\.50*\s*[,}]/, 'connect_timeout "2.5" -> JSON number 2.5');
like($r->{content}, qr/"sock_connect_timeout"\s*:\s*0(?:\.0*)?\s*[,}]/, 'sock_connect_timeout 0');
is($full->{sock_read_timeout}, 10, 'sock_read_timeout');
is_deeply($full->{headers}, $full{headers}, 'headers');
is_deeply($full->{includes}, $full{includes}, 'includes');
is_deeply($full->{excludes}, [], 'excludes [] stays a list');
is_deeply($full->{pulp_labels}, $full{pulp_labels}, 'pulp_labels');
is_deeply(hidden($full), { map { $_ => 1 } @SECRETS }, 'hidden_fields: all set');
ok(!grep({ exists $full->{$_} } @SECRETS), 'no secret as a key');
unlike($r->{content}, qr/PRIVATE KEY/, 'client_key not in the response');

$r = $t->get($full->{pulp_href});
is_json_status($r, 200, $full, 'GET returns the full remote');

# JSON special characters and UTF-8
my $odd = "caf\x{e9} \"quoted\" back\\slash \x{263a}";
$r = $t->post($REMOTES, { name => $odd, url => 'https://ghcr.io' });
is_json_status($r, 201, undef, 'create: name with quotes, backslash, UTF-8');
is($r->{json}{name}, $odd, 'name with quotes, backslash, UTF-8 kept');
is($t->get($r->{json}{pulp_href})->{json}{name}, $odd, 'and read back');

# read-only fields are ignored
$r = $t->post($REMOTES, { name => 'ro', url => 'http://127.0.0.2:5000',
                          pulp_href => '/x/', prn => 'prn:x', pulp_created => 'yesterday',
                          pulp_last_updated => 'x',
                          hidden_fields => [ { name => 'password', is_set => JSON::PP::true } ] });
is_json_status($r, 201, undef, 'read-only fields in input are accepted');
like($r->{json}{pulp_href}, qr{^\Q$REMOTES\E$UUID_RE/$}, 'and pulp_href is not taken from the input');
like($r->{json}{pulp_created}, $TS_RE, 'nor pulp_created');
is_deeply(hidden($r->{json}), { map { $_ => 0 } @SECRETS }, 'nor hidden_fields');
is($r->{json}{url}, 'http://127.0.0.2:5000', 'http:// URL with a port accepted');

# tls_validation spellings
my $tls = 0;
for my $case ([ 'true', 1 ], [ '1', 1 ], [ '0', 0 ], [ JSON::PP::true, 1 ], [ JSON::PP::false, 0 ]) {
    my ($in, $want) = @$case;
    my $r = $t->post($REMOTES, { name => 'tls-' . $tls++, url => 'https://x.example', tls_validation => $in });
    ok($r->{status} == 201 && is_bool($r->{json}{tls_validation})
       && ($r->{json}{tls_validation} ? 1 : 0) == $want, "tls_validation " . dump_json($in))
        or diag(dump_json($r));
}


# input errors: nothing is created by a failed request

my $before = $count->();

my $req = 'This field is required.';
is_field_errors($t->post($REMOTES, {}), { name => $req, url => $req }, '{}: name and url required');
is_field_errors($t->post($REMOTES, { url => 'https://x.example' }), { name => $req }, 'name required');
is_field_errors($t->post($REMOTES, { name => 'x' }), { url => $req }, 'url required');
is_field_errors($t->post($REMOTES, { name => '', url => 'https://x.example' }),
                { name => 'This field may not be blank.' }, 'name blank');
is_field_errors($t->post($REMOTES, { name => undef, url => 'https://x.example' }),
                { name => 'This field may not be null.' }, 'name null');
is_field_errors($t->post($REMOTES, { name => 5, url => 'https://x.example' }),
                { name => 'Not a valid string.' }, 'name a number');
is_field_errors($t->post($REMOTES, { name => [ 'x' ], url => 'https://x.example' }),
                { name => 'Not a valid string.' }, 'name a list');
is_field_errors($t->post($REMOTES, { name => 'docker', url => 'https://x.example' }),
                { name => 'This field must be unique.' }, 'name unique');
is_field_errors($t->post($REMOTES, { name => 'x', url => undef }),
                { url => 'This field may not be null.' }, 'url null');
is_field_errors($t->post($REMOTES, { name => 'x', url => '' }),
                { url => 'This field may not be blank.' }, 'url blank');

for my $url ('ftp://x.example', 'https://', 'http:///path', 'registry-1.docker.io',
             'https://user:secret@x.example', 'https://user@x.example', 'not a url',
             "https://x.example/a\nb",
             # a path is a prefix of upstream names: their grammar, no /v2
             'https://x.example/v2/', 'https://x.example/v2', 'https://x.example/v2/hub',
             'https://x.example/Hub', 'https://x.example/a//b', 'https://x.example//a',
             'https://x.example/a?x=1', 'https://x.example?x=1', 'https://x.example/#top',
             'https://x.example/a-', 'https://x.example/a/.b') {
    is_field_errors($t->post($REMOTES, { name => 'x', url => $url }), { url => undef },
                    "url " . dump_json($url) . " refused");
}
like($t->post($REMOTES, { name => 'x', url => 'https://x.example/v2/' })->{json}{url}[0],
     qr/without \/v2/, 'a url ending in /v2/: the message says to leave it out');

for my $f (qw(ca_cert client_cert)) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => 'garbage' }),
                    { $f => undef }, "$f not PEM");
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => $key }),
                    { $f => undef }, "$f a private key");
}
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', client_key => 'garbage' }),
                { client_key => undef }, 'client_key not PEM');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', client_key => $cert }),
                { client_key => undef }, 'client_key a certificate');

$r = $t->post($REMOTES, { name => 'x', url => 'https://x.example', client_cert => $cert, client_key => $other_key });
ok($r->{status} == 400 && ref $r->{json} eq 'HASH'
   && grep({ exists $r->{json}{$_} } qw(client_key client_cert non_field_errors)),
   'client_cert and client_key that do not match') or diag(dump_json($r));
unlike($r->{content}, qr/PRIVATE KEY|\Q@{[ substr($other_key, 40, 40) ]}\E/, 'and the key is not echoed');

for my $p ('https://u:p@proxy.example', 'ftp://proxy.example', 'proxy.example:3128',
           'http://proxy.example:3128/path') {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', proxy_url => $p }),
                    { proxy_url => undef }, "proxy_url $p refused");
}

is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', tls_validation => 'maybe' }),
                { tls_validation => 'Must be a valid boolean.' }, 'tls_validation "maybe"');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', tls_validation => undef }),
                { tls_validation => 'This field may not be null.' }, 'tls_validation null');

my $int = 'A valid integer is required.';
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', download_concurrency => 'abc' }),
                { download_concurrency => $int }, 'download_concurrency "abc"');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', download_concurrency => 1.5 }),
                { download_concurrency => $int }, 'download_concurrency 1.5');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', download_concurrency => 0 }),
                { download_concurrency => undef }, 'download_concurrency 0');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', download_concurrency => JSON::PP::true }),
                { download_concurrency => undef }, 'download_concurrency true');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', max_retries => -1 }),
                { max_retries => undef }, 'max_retries -1');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', rate_limit => -1 }),
                { rate_limit => undef }, 'rate_limit -1');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', rate_limit => [] }),
                { rate_limit => $int }, 'rate_limit []');
for my $f (qw(total_timeout connect_timeout sock_connect_timeout sock_read_timeout)) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => 'abc' }),
                    { $f => 'A valid number is required.' }, "$f \"abc\"");
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => -0.5 }),
                    { $f => undef }, "$f -0.5");
}

is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', headers => 'X-Foo: bar' }),
                { headers => 'Expected a list of items but got type "str".' }, 'headers a string');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', headers => { 'X-Foo' => 'bar' } }),
                { headers => 'Expected a list of items but got type "dict".' }, 'headers an object');
for my $h ([ { a => 'b', c => 'd' } ], [ {} ], [ 'X-Foo' ], [ { 'X-Foo' => 1 } ],
           [ { 'X-Foo' => "a\r\nX-Evil: 1" } ], [ { "X-Foo\nX" => 'a' } ],
           [ { 'bad name' => 'a' } ], [ { '' => 'a' } ]) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', headers => $h }),
                    { headers => undef }, 'headers ' . dump_json($h) . ' refused');
}
for my $f (qw(includes excludes)) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => 'library/*' }),
                    { $f => 'Expected a list of items but got type "str".' }, "$f a string");
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => [ 1 ] }),
                    { $f => undef }, "$f [1]");
}
for my $p (qw(immediate streamed)) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', policy => $p }),
                    { policy => "\"$p\" is not a valid choice." }, "policy $p");
}
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', pulp_labels => { a => 1 } }),
                { pulp_labels => undef }, 'pulp_labels with a number');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', pulp_labels => 'a=b' }),
                { pulp_labels => undef }, 'pulp_labels a string');
is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', foo => 1 }),
                { foo => 'Unexpected field' }, 'unknown field');
is_field_errors($t->post($REMOTES, { name => '', url => 'ftp://x', policy => 'immediate', bar => 1 }),
                { name => undef, url => undef, policy => undef, bar => undef },
                'every error at once');
for my $f (@SECRETS[1 .. 4]) {
    is_field_errors($t->post($REMOTES, { name => 'x', url => 'https://x.example', $f => 5 }),
                    { $f => 'Not a valid string.' }, "$f a number");
}

$r = $t->post($REMOTES, '{"name": "x", "url": ');
ok($r->{status} == 400 && ($r->{json}{detail} // '') =~ /^JSON parse error - /,
   'body not JSON: 400 JSON parse error') or diag(dump_json($r));
$r = $t->post($REMOTES, '[{"name": "x"}]');
is_json_status($r, 400, { non_field_errors => [ 'Invalid data. Expected a dictionary, but got list.' ] },
               'body a JSON list');
$r = $t->post($REMOTES, '"x"');
is_json_status($r, 400, { non_field_errors => [ 'Invalid data. Expected a dictionary, but got str.' ] },
               'body a JSON string');
$r = $t->post($REMOTES, '{"name": "x", "url": "https://x.example"} trailing');
ok($r->{status} == 400 && ($r->{json}{detail} // '') =~ /^JSON parse error - /,
   'JSON followed by garbage: 400 JSON parse error') or diag(dump_json($r));

is($count->(), $before, 'failed creates created nothing');

for my $url ('https://x.example/hub', 'https://x.example/hub/', 'http://127.0.0.1:5000/a.b/c__d/e-f') {
    my $r = $t->post($REMOTES, { name => "prefix-$url", url => $url });
    is($r->{status}, 201, "url $url accepted (a name prefix)") or diag(dump_json($r));
    is($r->{json}{url}, $url, '... kept as written');
}

# strings as DRF's CharField takes them: spaces around are trimmed, so
# spaces only are blank; a NUL is refused, or at least never cuts the name
is_field_errors($t->post($REMOTES, { name => '   ', url => 'https://x.example' }),
                { name => 'This field may not be blank.' }, 'name of spaces only is blank');
$r = $t->post($REMOTES, { name => "nul\x00byte", url => 'https://x.example' });
ok(($r->{status} == 400 && ref $r->{json}{name} eq 'ARRAY')
   || ($r->{status} == 201 && $r->{json}{name} eq "nul\x00byte"),
   'name with a NUL: refused, or kept whole (never cut)') or diag(dump_json($r));


# PATCH

my $orig = $t->get($full->{pulp_href})->{json};

$r = $t->patch($full->{pulp_href}, { url => 'https://quay.io/myorg/' });
my $task = task_of($t, $r);
is_deeply(keys_of($r->{json}), [ 'task' ], 'PATCH: 202 {"task"}');
like($r->{json}{task}, qr{^\Q$TASKS\E$UUID_RE/$}, 'task href');
is($task->{state}, 'completed', 'PATCH task completed');
ok(!defined $task->{error}, 'PATCH task has no error');
is_deeply($task->{created_resources}, [], 'PATCH task created nothing');

my $now = $t->get($full->{pulp_href})->{json};
is($now->{url}, 'https://quay.io/myorg/', 'PATCH changed url');
is($now->{pulp_created}, $orig->{pulp_created}, 'PATCH kept pulp_created');
ok(ts_epoch($now->{pulp_last_updated}) > ts_epoch($orig->{pulp_last_updated}),
   'PATCH moved pulp_last_updated');
is_deeply({ %$now, url => 0, pulp_last_updated => 0 }, { %$orig, url => 0, pulp_last_updated => 0 },
          'PATCH changed nothing else');

task_of($t, $t->patch($full->{pulp_href}, { name => 'full' }));
$now = $t->get($full->{pulp_href})->{json};
is($now->{name}, 'full', 'PATCH to its own name');
is_field_errors($t->patch($full->{pulp_href}, { name => 'docker' }),
                { name => 'This field must be unique.' }, 'PATCH to the name of another');
is_field_errors($t->patch($full->{pulp_href}, { name => '' }),
                { name => 'This field may not be blank.' }, 'PATCH name blank');
is_field_errors($t->patch($full->{pulp_href}, { name => undef }),
                { name => 'This field may not be null.' }, 'PATCH name null');
is_field_errors($t->patch($full->{pulp_href}, { url => 'ftp://x' }), { url => undef }, 'PATCH url ftp');
is_field_errors($t->patch($full->{pulp_href}, { client_key => $other_key }),
                { client_key => undef }, 'PATCH client_key that does not match client_cert')
    or diag('(a mismatch may be reported on client_cert or non_field_errors instead)');
is_field_errors($t->patch($full->{pulp_href}, { foo => 1 }), { foo => 'Unexpected field' },
                'PATCH unknown field');
is_field_errors($t->patch($full->{pulp_href}, { policy => 'immediate' }),
                { policy => '"immediate" is not a valid choice.' }, 'PATCH policy');
$r = $t->patch($full->{pulp_href}, '[]');
is_json_status($r, 400, { non_field_errors => [ 'Invalid data. Expected a dictionary, but got list.' ] },
               'PATCH with a list');
is_deeply($t->get($full->{pulp_href})->{json}, $now, 'failed PATCHes changed nothing');

task_of($t, $t->patch($full->{pulp_href}, { tls_validation => '1', download_concurrency => undef,
                                            headers => undef, includes => undef, pulp_labels => {} }));
$now = $t->get($full->{pulp_href})->{json};
ok($now->{tls_validation} && !defined $now->{download_concurrency} && !defined $now->{headers}
   && !defined $now->{includes} && !%{ $now->{pulp_labels} }, 'PATCH to null and empty')
    or diag(dump_json($now));

task_of($t, $t->patch($full->{pulp_href}, { password => undef, proxy_username => undef }));
is_deeply(hidden($t->get($full->{pulp_href})->{json}),
          { client_key => 1, proxy_username => 0, proxy_password => 1, username => 1, password => 0 },
          'PATCH secrets to null unsets them');
task_of($t, $t->patch($full->{pulp_href}, { password => 'new' }));
is(hidden($t->get($full->{pulp_href})->{json})->{password}, 1, 'PATCH a secret sets it');

task_of($t, $t->patch($rem->{pulp_href}, { pulp_href => '/x/', prn => 'x', hidden_fields => [] }));
my $same = $t->get($rem->{pulp_href})->{json};
is_deeply({ %$same, pulp_last_updated => 0 }, { %$rem, pulp_last_updated => 0 },
          'PATCH with only read-only fields changes nothing');


# PUT

is_field_errors($t->put($rem->{pulp_href}, { url => 'https://x.example' }),
                { name => 'This field is required.' }, 'PUT without name');
is_field_errors($t->put($rem->{pulp_href}, { name => 'docker' }),
                { url => 'This field is required.' }, 'PUT without url');
is_field_errors($t->put($rem->{pulp_href}, { name => 'full', url => 'https://x.example' }),
                { name => 'This field must be unique.' }, 'PUT to the name of another');

$orig = $t->get($full->{pulp_href})->{json};
$task = task_of($t, $t->put($full->{pulp_href}, { name => 'full2', url => 'https://quay.io' }));
is($task->{state}, 'completed', 'PUT name and url: task completed');
$now = $t->get($full->{pulp_href})->{json};
is_deeply({ %$now, name => 0, url => 0, pulp_last_updated => 0 },
          { %$orig, name => 0, url => 0, pulp_last_updated => 0 },
          'PUT kept the fields not given');
is("$now->{name} $now->{url}", 'full2 https://quay.io', 'PUT changed name and url');

# GET, modify, PUT back: read-only fields in the body are ignored
my $edit = { %$now, url => 'https://quay.io/edited', sock_read_timeout => 7 };
$task = task_of($t, $t->put($full->{pulp_href}, $edit));
is($task->{state}, 'completed', 'GET-modify-PUT: task completed');
$now = $t->get($full->{pulp_href})->{json};
is($now->{url}, 'https://quay.io/edited', 'GET-modify-PUT changed url');
is($now->{sock_read_timeout}, 7, 'GET-modify-PUT changed sock_read_timeout');
is_deeply(hidden($now), hidden($orig), 'GET-modify-PUT kept the secrets');
is(trim($now->{client_cert}), trim($cert), 'GET-modify-PUT kept client_cert');


# DELETE

my $n = $count->();
$r = $t->delete($rem->{pulp_href});
$task = task_of($t, $r);
is_deeply(keys_of($r->{json}), [ 'task' ], 'DELETE: 202 {"task"}');
is($task->{state}, 'completed', 'DELETE task completed');
is_json_status($t->get($rem->{pulp_href}), 404, { detail => 'Not found.' }, 'GET after DELETE: 404');
is_json_status($t->delete($rem->{pulp_href}), 404, { detail => 'Not found.' }, 'DELETE again: 404');
is_json_status($t->patch($rem->{pulp_href}, { url => 'https://x.example' }), 404, { detail => 'Not found.' },
               'PATCH after DELETE: 404');
is_json_status($t->put($rem->{pulp_href}, { name => 'docker', url => 'https://x.example' }), 404,
               { detail => 'Not found.' }, 'PUT after DELETE: 404');
is($count->(), $n - 1, 'list count went down by one');

$r = $t->post($REMOTES, { name => 'docker', url => 'https://registry-1.docker.io' });
is($r->{status}, 201, 'the name of a deleted remote can be used again');
isnt($r->{json}{pulp_href}, $rem->{pulp_href}, 'with a new id');


# unknown ids

for my $path ($REMOTES . uuid4() . '/', $REMOTES . 'not-a-uuid/', $REMOTES . "$id/",
              $REMOTES . '00000000-0000-0000-0000-000000000000/', $REMOTES . 'x' x 300 . '/') {
    is_json_status($t->get($path), 404, { detail => 'Not found.' }, "GET $path: 404");
}
is_json_status($t->delete($REMOTES . uuid4() . '/'), 404, { detail => 'Not found.' }, 'DELETE unknown id: 404');
is_json_status($t->patch($REMOTES . uuid4() . '/', { url => 'https://x.example' }), 404,
               { detail => 'Not found.' }, 'PATCH unknown id: 404');

$t->stop;
done_testing;
