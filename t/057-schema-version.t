#!/usr/bin/perl

# The store's schema version: written as "1" in the "meta" sub-database of
# PATH/meta; a store with a newer version is refused at startup with an
# [emerg] naming the schema version, and left as it is.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;
use PT::Util qw(need_tools);

need_tools(qw(mdb_dump mdb_load));

my $t = PT::Nginx->new(conf => admin_conf(workers => 2))->start;
my $meta = $t->store . '/meta';

my $href = create_remote($t, name => 'kept', url => 'https://x.example', password => 'pw')->{pulp_href};
$t->stop;

sub schema_version {
    my $out = `mdb_dump -p -s meta $meta 2>&1`;
    return "mdb_dump failed: $out" if $?;
    return $out =~ /^ schema_version\n (.*)\n/m ? $1 : "no schema_version in: $out";
}

sub set_schema_version {
    my ($v) = @_;
    open my $fh, '|-', "mdb_load -T -s meta $meta" or die "mdb_load: $!";
    print $fh "schema_version\n$v\n";
    close $fh or die "mdb_load failed ($?)\n";
}

is(schema_version(), '1', 'the store has schema_version 1');

for my $v ('2', '999') {
    set_schema_version($v);
    my $mark = length $t->error_log;

    ok(!$t->try_start, "schema_version $v: nginx does not start");
    my $log = substr($t->error_log, $mark) . $t->stderr_log;
    my @lines = grep { /schema version/ } split /\n/, $log;
    ok(@lines, "schema_version $v: a line names the schema version") or diag($log);
    ok(grep({ /\[emerg\]/ } @lines), "schema_version $v: at [emerg]") or diag(join "\n", @lines);
    ok(grep({ /\b$v\b/ } @lines), "schema_version $v: the line tells the version found") or diag(join "\n", @lines);
    $t->allow_log(qr/schema version/);
    ok($t->exit_status, "schema_version $v: the master exited with an error");
    is(schema_version(), $v, "schema_version $v: the store was left as it was");
}

# nginx -t runs the same check
local $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
my $out = `$PT::Nginx::NGINX -t -p @{[ $t->dir ]}/ -c @{[ $t->conf_file ]} -e @{[ $t->dir ]}/test.log 2>&1`;
ok($?, 'nginx -t fails on a newer store') or diag($out);
like($out . PT::Util::slurp($t->dir . '/test.log'), qr/schema version/, 'nginx -t names the schema version');

set_schema_version('1');
$t->start;
is($t->get($href)->{json}{name}, 'kept', 'back to version 1: the store works, data kept');
is($t->post($REMOTES, { name => 'new', url => 'https://x.example' })->{status}, 201, 'and takes writes');
$t->stop;
is(schema_version(), '1', 'schema_version still 1');

done_testing;
