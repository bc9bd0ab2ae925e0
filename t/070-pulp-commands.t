#!/usr/bin/perl

# The two commands of Pulp's pull-through cache documentation, run verbatim
# with httpie and jq through bash, then a few more httpie commands (string
# values from key=value items, query parameters, PATCH, DELETE).
#
# httpie reads a request body from standard input when that is not a
# terminal, and refuses key=value items then; a shell user has a terminal,
# a test does not. The test gives httpie its own configuration directory
# whose config.json passes --ignore-stdin (and disables update checks), so
# the commands themselves stay verbatim.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use PT::Nginx;
use PT::Pulp;
use PT::Util qw(need_tools);

need_tools(qw(http jq));

my $t = PT::Nginx->new(conf => admin_conf())->start;
my $dir = $t->dir;

mkdir "$dir/httpie" or die;
open my $fh, '>', "$dir/httpie/config.json" or die;
print $fh '{"default_options": ["--ignore-stdin"], "disable_update_warnings": true}';
close $fh;

# runs a bash script with BASE_ADDR set; returns (exit status, stdout, stderr)
sub bash {
    my ($script) = @_;
    open my $s, '>', "$dir/script.sh" or die;
    print $s "set -euo pipefail\n$script";
    close $s;
    local $ENV{BASE_ADDR} = $t->base_url;
    local $ENV{HTTPIE_CONFIG_DIR} = "$dir/httpie";
    local $ENV{HOME} = $dir;
    my $out = `bash $dir/script.sh 2>$dir/script.err </dev/null`;
    return ($? >> 8, $out, PT::Util::slurp("$dir/script.err"));
}

my ($rc, $out, $err) = bash(<<'EOF');
REMOTE_HREF=$(http ${BASE_ADDR}/pulp/api/v3/remotes/container/pull-through/ name=docker-cache url=https://registry-1.docker.io | jq -r ".pulp_href")
http ${BASE_ADDR}/pulp/api/v3/distributions/container/pull-through/ remote=${REMOTE_HREF} name=docker-cache base_path=docker-cache
echo
echo "REMOTE_HREF=$REMOTE_HREF"
EOF
is($rc, 0, 'the two commands ran') or diag($err);

my ($href) = $out =~ /^REMOTE_HREF=(\S*)$/m;
$href //= '/none/';
like($href // '', qr{^\Q$REMOTES\E$UUID_RE/$}, 'the first command gave a remote href')
    or diag($out);
(my $body = $out) =~ s/^REMOTE_HREF=.*\n?//m;
my $task = eval { JSON::PP->new->decode($body) };
ok($task && $task->{task}, 'the second command answered {"task": ...}') or diag($out);

my $r = $t->get($task->{task} // '/none/');
is($r->{json}{state}, 'completed', 'the task completed');

$r = $t->get($href // '/none/');
is($r->{status}, 200, 'the remote exists');
is($r->{json}{name}, 'docker-cache', 'remote name');
is($r->{json}{url}, 'https://registry-1.docker.io', 'remote url');
is($r->{json}{policy}, 'on_demand', 'remote policy');

my $dists = list_all($t, $DISTS);
is(scalar @$dists, 1, 'one distribution');
is($dists->[0]{name}, 'docker-cache', 'distribution name');
is($dists->[0]{base_path}, 'docker-cache', 'distribution base_path');
is($dists->[0]{remote}, $href, 'distribution remote');
is_deeply($dists->[0]{distributions}, [], 'distribution has no image yet');

# the same once more: both refused, nothing more made
($rc, $out, $err) = bash(<<'EOF');
http ${BASE_ADDR}/pulp/api/v3/remotes/container/pull-through/ name=docker-cache url=https://registry-1.docker.io | jq -c .
http ${BASE_ADDR}/pulp/api/v3/distributions/container/pull-through/ remote=${BASE_ADDR}/pulp/api/v3/remotes/container/pull-through/ name=docker-cache base_path=docker-cache | jq -c .
EOF
my @answers = map { eval { JSON::PP->new->decode($_) } } split /\n/, $out;
is(dump_json($answers[0]), '{"name":["This field must be unique."]}', 'run again: the remote is refused')
    or diag($out);
is(dump_json($answers[1]{remote}), '["Invalid hyperlink - No URL match."]',
   'a distribution with a wrong remote is refused') or diag($out);
is($t->get($REMOTES)->{json}{count}, 1, 'still one remote');

# httpie sends every key=value as a string
($rc, $out, $err) = bash(<<EOF);
http --check-status PATCH \${BASE_ADDR}${href} tls_validation=false download_concurrency=5 max_retries=0 total_timeout=30.5 includes:='["library/*"]' >/dev/null
http --check-status \${BASE_ADDR}/pulp/api/v3/remotes/container/pull-through/ name==docker-cache | jq -c '.results[0] | [.tls_validation, .download_concurrency, .max_retries, .total_timeout, .includes]'
http --check-status PATCH \${BASE_ADDR}/pulp/api/v3/distributions/container/pull-through/ base_path=x >/dev/null 2>&1 || echo "PATCH list: exit \$?"
EOF
is($rc, 0, 'httpie PATCH and GET with a query') or diag($err);
my @lines = split /\n/, $out;
is($lines[0], '[false,5,0,30.5,["library/*"]]', 'strings from httpie became booleans and numbers');
like($out, qr/PATCH list: exit 4/, 'httpie sees a 4xx for PATCH on a list');

($rc, $out, $err) = bash(<<EOF);
http --check-status DELETE \${BASE_ADDR}${href} >/dev/null 2>&1 || echo "exit \$?"
DIST=\$(http \${BASE_ADDR}/pulp/api/v3/distributions/container/pull-through/ | jq -r '.results[0].pulp_href')
http --check-status DELETE \${BASE_ADDR}\$DIST | jq -r .task
http --check-status DELETE \${BASE_ADDR}${href} | jq -r .task
EOF
is($rc, 0, 'httpie DELETEs') or diag($err);
like($out, qr/^exit 4$/m, 'deleting the remote in use: 4xx');
like($out, qr{^\Q$TASKS\E$UUID_RE/\n\Q$TASKS\E$UUID_RE/$}m, 'then the distribution and the remote: two tasks');
is($t->get($REMOTES)->{json}{count} . '/' . $t->get($DISTS)->{json}{count}, '0/0', 'nothing left');

$t->stop;
done_testing;
