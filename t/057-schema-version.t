#!/usr/bin/perl

# The store's schema: its version is written as "4" in the "meta"
# sub-database of PATH/meta, every other value begins with its format byte
# (1). A store with a newer version is refused at startup with an [emerg]
# naming the schema version, and left as it is. A store of version 1 (the
# same values without their format byte, and without the indexes versions 3
# and 4 added) is upgraded at start, step by step and in batches, and
# everything in it stays readable and listed, its content units included;
# "nginx -t" names the upgrade to come and changes nothing.

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
my $dist = create_dist($t, name => 'hub', base_path => 'hub', remote => $href);
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

# every value of every database but meta, as mdb_dump prints them:
# { db => { key => value } }
sub values_by_db {
    my $out = `mdb_dump -a -p $meta 2>&1`;
    die "mdb_dump failed: $out" if $?;
    my (%v, $db, $data);
    my @l = split /\n/, $out;
    while (defined(my $l = shift @l)) {
        if ($l =~ /^database=(.*)/) { $db = $1; next }
        if ($l eq 'HEADER=END') { $data = 1; next }
        if ($l eq 'DATA=END') { $data = 0; next }
        next unless $data && $db ne 'meta';
        my $val = shift @l;
        $v{$db}{ substr($l, 1) } = substr($val, 1);
    }
    return \%v;
}

# loads "key\nvalue\n" pairs (printable form) into a database
sub load {
    my ($db, @pairs) = @_;
    open my $fh, '|-', "mdb_load -T -s $db $meta" or die "mdb_load: $!";
    print $fh "$_\n" for @pairs;
    close $fh or die "mdb_load failed ($?)\n";
}

is(schema_version(), '4', 'a new store has schema_version 4');

my $values = values_by_db();
my @all = map { values %$_ } values %$values;
ok(@all >= 6, 'the store holds values (remote, distribution, names, task)');
is(scalar(grep { !/^\\01/ } @all), 0, 'every value begins with its format byte 1')
    or diag(explain($values));

for my $v ('5', '999') {
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
my $test = "$PT::Nginx::NGINX -t -p @{[ $t->dir ]}/ -c @{[ $t->conf_file ]} -e @{[ $t->dir ]}/test.log 2>&1";
my $out = `$test`;
ok($?, 'nginx -t fails on a newer store') or diag($out);
like($out . PT::Util::slurp($t->dir . '/test.log'), qr/schema version/, 'nginx -t names the schema version');

set_schema_version('4');
$t->start;
is($t->get($href)->{json}{name}, 'kept', 'back to version 4: the store works, data kept');
is($t->post($REMOTES, { name => 'new', url => 'https://x.example' })->{status}, 201, 'and takes writes');
$t->stop;
is(schema_version(), '4', 'schema_version still 4');


# A store written by version 1: the same values without their format byte,
# and more of them than one upgrade transaction rewrites (1000), so that
# the upgrade runs in several.

my $TAGS = 2500;
my $BLOBS = 1500;        # in each of two repositories, half of them shared
my $digest = 'sha256:' . ('ab' x 32);
sub blob { sprintf 'sha256:%064x', $_[0] }
{
    # a store of its own, without the indexes of versions 3 and 4
    $values = values_by_db();
    rename $meta, "$meta.v4" or die "rename: $!";
    mkdir $meta or die "mkdir: $!";
    my %later = map { $_ => 1 } qw(created children manifest_units blob_units unit_holders unit_ids);
    for my $db (sort grep { !$later{$_} } keys %$values) {
        load($db, map { ($_, $values->{$db}{$_} =~ s/^\\01//r) } sort keys %{ $values->{$db} });
    }
    load('tags', map { ("hub/library/many\\00t$_", $digest) } 1 .. $TAGS);
    load('blobs', (map { ("hub/library/many\\00" . blob($_), '-1') } 1 .. $BLOBS),
                  (map { ("hub/library/other\\00" . blob($_), '-1') } $BLOBS / 2 + 1 .. $BLOBS * 3 / 2));
    load('manifests', "hub/library/many\\00$digest",
         qq({"media_type":"application/vnd.oci.image.manifest.v1+json","size":10,"created":"2026-01-01T00:00:00.000000Z","config":"@{[ blob(1) ]}","blobs":["@{[ blob(1) ]}"],"manifests":[]}));
    set_schema_version('1');

    my $v1 = values_by_db();
    is(scalar(grep { /^\\01/ } map { values %$_ } values %$v1), 0,
       'version 1 store: no value has a format byte');
    is(scalar(keys %{ $v1->{tags} }), $TAGS, "... and $TAGS tags");
}

$out = `$test`;
ok(!$?, 'nginx -t accepts a version 1 store') or diag($out);
like(PT::Util::slurp($t->dir . '/test.log'), qr/schema version 1: it is upgraded to 4 when nginx starts/,
     '... and says it is upgraded at start');
is(schema_version(), '1', '... without changing it');

my $mark = length $t->error_log;
$t->start;
my $log = substr($t->error_log, $mark);
like($log, qr/\[notice\].*upgrading the store .* from schema version 1 to 2/, 'start: the upgrade is logged');
like($log, qr/\[notice\].*\b(\d+) values were given their format/, '... with the number of values');
my ($n) = $log =~ /\b(\d+) values were given their format/;
ok(($n // 0) >= $TAGS + 6, "... every value ($n)");
like($log, qr/\[notice\].*from schema version 2 to 3/, '... then the step from 2 to 3');
like($log, qr/\[notice\].*\b(\d+) records indexed by creation/, '... which indexes the records');
like($log, qr/\[notice\].*from schema version 3 to 4/, '... then the step from 3 to 4');
my ($units) = $log =~ /\b(\d+) entries of content indexed as units/;
is($units, $TAGS + 2 * $BLOBS + 1, '... which indexes every tag, blob and manifest as units');
is(schema_version(), '4', 'the store is at version 4');

is($t->get($href)->{json}{name}, 'kept', 'upgraded: the remote reads');
my $r = $t->get($REMOTES . '?name=kept');
is($r->{json}{count}, 1, '... lists, filtered by name');
$r = $t->get($REMOTES);
is_deeply([ $r->{json}{count}, map { $_->{name} } @{ $r->{json}{results} } ], [ 2, 'new', 'kept' ],
          '... lists in the order of creation, newest first (the index rebuilt)');
is($t->get($TASKS)->{json}{count}, scalar(@{ list_all($t, $TASKS) }), '... tasks list with their count');
is($t->get($dist->{pulp_href})->{json}{base_path}, 'hub', '... the distribution reads');
is($t->patch($href, { url => 'https://y.example' })->{status}, 202, '... the remote updates');

$r = $t->request(GET => "/v2/hub/library/many/tags/list?n=5000");
is($r->{status}, 200, 'the tags of version 1 list through the registry');
is(scalar @{ $r->{json}{tags} || [] }, $TAGS, "... all $TAGS of them");

# the content units the upgrade indexed: counted, paged, found by id
$r = $t->get("$API/content/container/tags/?limit=3");
is($r->{json}{count}, $TAGS, "tag units: all $TAGS counted");
is_deeply([ map { $_->{name} } @{ $r->{json}{results} } ], [ 't1', 't10', 't100' ],
          '... the first page in the order of names');
is($t->get($r->{json}{results}[1]{pulp_href})->{json}{name}, 't10', '... a tag unit read by its href');
$r = $t->get("$API/content/container/blobs/?limit=2&offset=" . ($BLOBS - 1));
is($r->{json}{count}, $BLOBS * 3 / 2, 'blob units: one per digest, whatever repositories have it');
is_deeply([ map { $_->{digest} } @{ $r->{json}{results} } ], [ blob($BLOBS), blob($BLOBS + 1) ],
          '... a page in the order of digests');
$r = $t->get("$API/content/container/manifests/");
is($r->{json}{count}, 1, 'manifest units: the one manifest');
is($r->{json}{results}[0]{config_blob}, $t->get("$API/content/container/blobs/?digest=" . blob(1))->{json}{results}[0]{pulp_href},
   "... its config blob's href is the blob unit's");
is($t->get($r->{json}{results}[0]{pulp_href})->{json}{digest}, $digest, '... read by its href');
$t->stop;

my $v2 = values_by_db();
is(scalar(grep { !/^\\0[12]/ } map { values %$_ } values %$v2), 0, 'every value has its format byte again');
is($v2->{tags}{'hub/library/many\00t1'}, "\\02$digest", '... in front of the value it had (tags: format 2, never checked)');

# started again: nothing left to upgrade
$mark = length $t->error_log;
$t->start;
unlike(substr($t->error_log, $mark), qr/upgrading/, 'a second start does not upgrade again');
is($t->get($href)->{json}{url}, 'https://y.example', '... and reads what was written after the upgrade');
$t->stop;

done_testing;
