#!/usr/bin/perl

# Content units (tags, manifests, blobs) as Pulp lists them, from indexes
# that pulls and deletions keep in step: a blob two repositories have is
# one unit with one href, counted once, and stays until the last of them
# is deleted; every href a list or a manifest names reads back. At scale
# (10,000 repositories, 100,000 blob entries, written as a version 3 store
# and indexed by the upgrade to 4) a first page of every content list is
# right, with its count, and costs the page: a worker's memory does not
# grow with the store.

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

need_tools(qw(docker-registry skopeo openssl mdb_load));

my $TAGS = "$API/content/container/tags/";
my $MANIFESTS = "$API/content/container/manifests/";
my $BLOBS = "$API/content/container/blobs/";
my $REPOS = "$API/repositories/container/container/";
my $tmp = tempdir('pt-355-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello));
my $h10 = $img->{'library/hello:1.0'};
my $h11 = $img->{'library/hello:1.1'};

my $t = PT::Nginx->new(conf => cache_conf(workers => 1))->start;
setup_cache($t, $reg->url, base_path => 'a', name => 'a');
setup_cache($t, $reg->url, base_path => 'b', name => 'b');

my $n = 0;
sub pull {
    my ($ref, $base) = @_;
    my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t, $ref, $base), "dir:$tmp/" . ++$n);
    is($rc, 0, "pull $base/$ref") or diag($out);
}

sub digests { [ sort map { $_->{digest} } @{ list_all($t, $_[0]) } ] }
sub blobs_of { my ($i) = @_; return ($i->{config}, @{ $i->{layers} }) }
sub uniq { my %s; [ sort grep { !$s{$_}++ } @_ ] }

# the same image through two distributions: two repositories, one unit each
pull('library/hello:1.0', 'a');
pull('library/hello:1.0', 'b');

is_deeply(digests($BLOBS), uniq(blobs_of($h10)), 'two repositories, the same blobs: one blob unit each');
is_deeply(digests($MANIFESTS), [ $h10->{digest} ], '... one manifest unit');
my $tags = list_all($t, $TAGS);
is(scalar @$tags, 2, 'a tag unit per repository');
isnt($tags->[0]{pulp_href}, $tags->[1]{pulp_href}, '... with hrefs of their own');
is($t->get($BLOBS)->{json}{count}, scalar @{ uniq(blobs_of($h10)) }, 'the blob count is the units\'');

# every href a unit names reads back as that unit
my ($m) = @{ list_all($t, $MANIFESTS) };
is($t->get($m->{pulp_href})->{json}{digest}, $h10->{digest}, 'a manifest unit reads by its href');
is($t->get($m->{config_blob})->{json}{digest}, $h10->{config}, '... its config_blob href is the config\'s unit');
is_deeply(uniq(map { $t->get($_)->{json}{digest} // 'none' } @{ $m->{blobs} }), uniq(blobs_of($h10)),
          '... each of its blobs hrefs reads as that blob');
is($t->get($tags->[0]{tagged_manifest})->{json}{digest}, $h10->{digest}, 'a tag\'s tagged_manifest reads');
is($t->get($tags->[0]{pulp_href})->{json}{name}, '1.0', 'a tag unit reads by its href');
is($t->get("${TAGS}00000000-0000-5000-8000-000000000000/")->{status}, 404, 'an unknown unit: 404');
is($t->get($BLOBS . substr($m->{pulp_href}, length $MANIFESTS))->{status}, 404,
   'a manifest unit\'s id under blobs/: 404');

# filters: one lookup, and right
my $l = $t->get("$BLOBS?digest=$h10->{layers}[0]")->{json};
is_deeply([ $l->{count}, map { $_->{digest} } @{ $l->{results} } ], [ 1, $h10->{layers}[0] ], 'digest= on blobs');
is($t->get("$BLOBS?digest=sha256:" . ('0' x 64))->{json}{count}, 0, '... of none: count 0');
is($t->get("$BLOBS?digest=$h10->{layers}[0]&offset=1")->{json}{count}, 1, '... its count past the page');
$l = $t->get("$TAGS?name=1.0&digest=$h10->{digest}")->{json};
is($l->{count}, 2, 'name= and digest= on tags: the tag in both repositories');

# another tag in one repository: the units it adds, and only those
pull('library/hello:1.1', 'a');
is_deeply(digests($BLOBS), uniq(blobs_of($h10), blobs_of($h11)), 'hello:1.1 in a: its new blobs are new units');
is($t->get($TAGS)->{json}{count}, 3, '... and a third tag unit');
is_deeply([ map { "$_->{name}" } @{ list_all($t, "$TAGS?limit=1&offset=1") } ], [ '1.1', '1.0' ],
          'tags page by page, in the order of repository and name');

# deleting a repository takes only the units no other one has
sub repo_named { my ($name) = @_; (grep { $_->{name} eq $name } @{ list_all($t, $REPOS) })[0] }
my $repo_a = repo_named('a/library/hello');
is(task_of($t, $t->delete($repo_a->{pulp_href}))->{state}, 'completed', 'repository a/library/hello deleted');
is_deeply(digests($BLOBS), uniq(blobs_of($h10)), '... b\'s blobs stay units, a\'s own are gone');
is_deeply(digests($MANIFESTS), [ $h10->{digest} ], '... b\'s manifest stays');
is($t->get($TAGS)->{json}{count}, 1, '... one tag unit left');
my ($gone) = grep { $_ ne $h10->{digest} } blobs_of($h11);
is($t->get("$BLOBS?digest=$gone")->{json}{count}, 0, '... a blob only a had: no unit');

is(task_of($t, $t->delete(repo_named('b/library/hello')->{pulp_href}))->{state}, 'completed',
   'repository b/library/hello deleted');
is($t->get($_)->{json}{count}, 0, "... then $_ is empty") for $TAGS, $MANIFESTS, $BLOBS;
is($t->get($m->{pulp_href})->{status}, 404, '... and the manifest unit\'s href: 404');
$t->stop;


# At scale: a store of schema version 3 with 10,000 repositories of ten
# blobs each (half of them shared with the next repository), a tag and a
# manifest each; the start indexes them as units.

my $NREPO = 10_000;
my $meta = $t->store . '/meta';
sub blob { sprintf 'sha256:%064x', $_[0] }
{
    my %v;
    for my $r (0 .. $NREPO - 1) {
        my $repo = sprintf 'a/scale/r%05d', $r;
        my @b = map { blob($r * 5 + $_) } 0 .. 9;
        $v{blobs}{"$repo\\00$_"} = '\\011000' for @b;
        my $md = sprintf 'sha256:%064x', 10**9 + $r;
        $v{tags}{"$repo\\00latest"} = "\\02$md 0";
        $v{manifests}{"$repo\\00$md"} = '\\01{"media_type":"application/vnd.oci.image.manifest.v1+json",'
            . qq("size":100,"created":"2026-01-01T00:00:00.000000Z","config":"$b[0]",)
            . '"blobs":[' . join(',', map { qq("$_") } @b) . '],"manifests":[]}';
    }
    for my $db (sort keys %v) {
        open my $fh, '|-', "mdb_load -T -s $db $meta" or die "mdb_load: $!";
        print $fh "$_\n$v{$db}{$_}\n" for sort keys %{ $v{$db} };
        close $fh or die "mdb_load $db failed ($?)\n";
    }
    open my $fh, '|-', "mdb_load -T -s meta $meta" or die "mdb_load: $!";
    print $fh "schema_version\n3\n";
    close $fh or die "mdb_load meta failed ($?)\n";
}

my $mark = length $t->error_log;
$t->start;
my ($indexed) = substr($t->error_log, $mark) =~ /(\d+) entries of content indexed as units/;
is($indexed, $NREPO * 12, "the upgrade indexed every entry ($NREPO repositories: 12 each)");

my $NBLOB = $NREPO * 5 + 5;
$l = $t->get("$BLOBS?limit=10")->{json};
is($l->{count}, $NBLOB, "$NBLOB distinct blobs: the count");
is_deeply([ map { $_->{digest} } @{ $l->{results} } ], [ map { blob($_) } 0 .. 9 ], '... the first page');
$l = $t->get("$BLOBS?limit=3&offset=40000")->{json};
is_deeply([ map { $_->{digest} } @{ $l->{results} } ], [ map { blob($_) } 40000 .. 40002 ], '... a page at offset 40000');
$l = $t->get("$MANIFESTS?limit=2")->{json};
is($l->{count}, $NREPO, "$NREPO manifests: the count");
is(scalar @{ $l->{results}[0]{blobs} }, 10, '... a manifest unit names its ten blobs');
$l = $t->get("$TAGS?limit=2&offset=9998")->{json};
is_deeply([ $l->{count}, map { $_->{name} } @{ $l->{results} } ], [ $NREPO, 'latest', 'latest' ],
          "$NREPO tags: the count and the last page");
is($t->get($l->{results}[1]{pulp_href})->{json}{name}, 'latest', '... a tag unit reads by its href');
$l = $t->get("$BLOBS?digest=" . blob(25000))->{json};
is($l->{count}, 1, 'digest= at scale: the one unit');

# memory: first pages of every content list leave a worker as it was
my ($worker) = @{ $t->worker_pids };
$t->get("$_?limit=100") for $TAGS, $MANIFESTS, $BLOBS;
my $before = vm_kib($worker, 'VmHWM');
for my $i (1 .. 30) {
    $t->get("$_?limit=100") for $TAGS, $MANIFESTS, $BLOBS;
    $t->get("$BLOBS?limit=10&offset=" . ($i * 1000));
}
my $grew = vm_kib($worker, 'VmHWM') - $before;
SKIP: {
    skip PT::Pull::memory_unmeasurable(), 1 if PT::Pull::memory_unmeasurable();
    cmp_ok($grew, '<', 2048, "120 content list requests: the worker's peak memory grew by less than 2 MiB ($grew KiB)");
}

$t->stop;

done_testing;
