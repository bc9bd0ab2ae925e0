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
use Digest::SHA ();
use JSON::PP ();

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


# What an image is, with Pulp's fields: from the manifest when it is
# recorded (type, compressed_image_size, annotations), and from its config
# blob once that was fetched through the cache (architecture, os, labels,
# bootable and flatpak); null while the config never came.

my $reg2 = PT::Registry->new->start;
my $img2 = PT::Images::seed($reg2, qw(hello app multi));
my $t2 = PT::Nginx->new(conf => cache_conf(workers => 1))->start;
setup_cache($t2, $reg2->url, base_path => 'n', name => 'n');

sub unit_of {
    my ($digest) = @_;
    my $l = $t2->get("$MANIFESTS?digest=$digest")->{json};
    return $l->{count} ? $l->{results}[0] : undef;
}
sub pull2 {
    my ($ref) = @_;
    my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t2, $ref, 'n'), "dir:$tmp/" . ++$n);
    is($rc, 0, "pull n/$ref") or diag($out);
}
sub sum { my $s = 0; $s += $_ for @_; $s }
sub nature {
    my ($u) = @_;
    return { map { $_ => $u->{$_} } qw(type architecture os compressed_image_size is_bootable is_flatpak) };
}

# a raw image pushed to the upstream: its config's bytes and media type
sub push_raw {
    my ($repo, $tag, $config, $config_type, @layers) = @_;
    my @blobs = map { { bytes => $_, digest => 'sha256:' . Digest::SHA::sha256_hex($_) } } $config, @layers;
    for my $b (@blobs) {
        my $r = PT::Images::registry_request($reg2, 'POST', "/v2/$repo/blobs/uploads/");
        die "upload: $r->{status}\n" unless $r->{status} == 202;
        my $loc = $r->{headers}{location};
        $loc =~ s{^https?://[^/]+}{};
        $r = PT::Images::registry_request($reg2, 'PUT', $loc . ($loc =~ /\?/ ? '&' : '?') . "digest=$b->{digest}",
                                          headers => { 'Content-Type' => 'application/octet-stream' },
                                          content => $b->{bytes});
        die "upload $b->{digest}: $r->{status} $r->{content}\n" unless $r->{status} == 201;
    }
    my ($c, @l) = @blobs;
    my $m = JSON::PP->new->canonical->encode({
        schemaVersion => 2, mediaType => 'application/vnd.oci.image.manifest.v1+json',
        config => { mediaType => $config_type, digest => $c->{digest}, size => length $c->{bytes} },
        layers => [ map { { mediaType => 'application/vnd.oci.image.layer.v1.tar', digest => $_->{digest},
                            size => length $_->{bytes} } } @l ],
    });
    my $r = PT::Images::registry_request($reg2, 'PUT', "/v2/$repo/manifests/$tag",
                                         headers => { 'Content-Type' => 'application/vnd.oci.image.manifest.v1+json' },
                                         content => $m);
    die "manifest $repo:$tag: $r->{status} $r->{content}\n" unless $r->{status} == 201;
    return { digest => 'sha256:' . Digest::SHA::sha256_hex($m), config => $c->{digest},
             sizes => [ map { length } @layers ] };
}

# an OCI image, pulled whole
my $o = $img2->{'library/hello:1.0'};
pull2('library/hello:1.0');
my $u = unit_of($o->{digest});
is($u->{media_type}, 'application/vnd.oci.image.manifest.v1+json', 'OCI image: media_type');
is_deeply(nature($u), { type => 'image', architecture => 'amd64', os => 'linux',
                        compressed_image_size => sum(@{ $o->{layer_sizes} }),
                        is_bootable => JSON::PP::false, is_flatpak => JSON::PP::false },
          '... type image, its config\'s platform, the sum of its layers\' sizes');
cmp_ok($u->{compressed_image_size}, '!=', sum(@{ $o->{layer_sizes} }) + $o->{config_size},
       '... which leaves the config out');
is_deeply($u->{annotations}, { 'org.opencontainers.image.title' => 'hello-1.0' }, '... its annotations');
is_deeply($u->{labels}, {}, '... no labels: {}');
is_deeply(nature($t2->get($u->{pulp_href})->{json}), nature($u), '... the same by its href');

# a Docker schema 2 image, pulled whole
my $d = $img2->{'team/app:1.0'};
pull2('team/app:1.0');
$u = unit_of($d->{digest});
is($u->{media_type}, 'application/vnd.docker.distribution.manifest.v2+json', 'Docker schema 2 image: media_type');
is_deeply(nature($u), { type => 'image', architecture => 'amd64', os => 'linux',
                        compressed_image_size => sum(@{ $d->{layer_sizes} }),
                        is_bootable => JSON::PP::false, is_flatpak => JSON::PP::false },
          '... type image, platform and compressed size');
is_deeply([ $u->{annotations}, $u->{labels} ], [ {}, {} ], '... no annotations, no labels');

# only the manifest: no platform until its config is fetched
my $h11b = $img2->{'library/hello:1.1'};
is($t2->get("/v2/n/library/hello/manifests/1.1", headers => { Accept => $PT::Images::ACCEPT })->{status}, 200,
   'hello:1.1: its manifest alone through the cache');
$u = unit_of($h11b->{digest});
is_deeply(nature($u), { type => 'image', architecture => undef, os => undef,
                        compressed_image_size => sum(@{ $h11b->{layer_sizes} }),
                        is_bootable => JSON::PP::false, is_flatpak => JSON::PP::false },
          '... type and size known, architecture and os null');
is($t2->get("/v2/n/library/hello/blobs/$h11b->{config}")->{status}, 200, '... then its config blob');
is_deeply([ @{ unit_of($h11b->{digest}) }{qw(architecture os)} ], [ 'amd64', 'linux' ],
          '... and the manifest has its platform');

# an OCI index and a Docker manifest list, one platform pulled whole
for my $ref ('library/multi:1.0', 'team/multi:1.0') {
    my $i = $img2->{$ref};
    pull2($ref);
    my @kids = map { $i->{children}{$_} } sort keys %{ $i->{children} };
    ok(wait_for(sub { !grep { !unit_of($_->{digest}) } @kids }, 10), "$ref: its manifests recorded");
    $u = unit_of($i->{digest});
    is($u->{media_type}, $i->{media_type}, "$ref: media_type $i->{media_type}");
    is_deeply(nature($u), { type => 'index', architecture => undef, os => undef, compressed_image_size => undef,
                            is_bootable => JSON::PP::false, is_flatpak => JSON::PP::false },
              '... type index, no platform, no size');
    is_deeply([ sort map { $t2->get($_)->{json}{digest} } @{ $u->{listed_manifests} } ],
              [ sort map { $_->{digest} } @kids ], '... listed_manifests: its manifests');
    is_deeply([ $u->{config_blob}, $u->{blobs} ], [ undef, [] ], '... no config, no blobs');
    my $amd = unit_of($i->{children}{'linux/amd64'}{digest});
    my $arm = unit_of($i->{children}{'linux/arm64'}{digest});
    is_deeply([ @$amd{qw(type architecture os compressed_image_size)} ],
              [ 'image', 'amd64', 'linux', sum(@{ $i->{children}{'linux/amd64'}{layer_sizes} }) ],
              '... the platform pulled: its architecture, os and size');
    is_deeply([ @$arm{qw(type architecture os compressed_image_size)} ],
              [ 'image', undef, undef, sum(@{ $i->{children}{'linux/arm64'}{layer_sizes} }) ],
              '... the other, its manifest only: architecture and os null');
}

# what a config's labels and a manifest's config type make of it
my $cfg = sub { JSON::PP->new->canonical->encode({ architecture => 'arm64', os => 'linux', config => { Labels => $_[0] } }) };
my $oci_cfg = 'application/vnd.oci.image.config.v1+json';
my %raw = (
    bootc   => push_raw('raw/bootc', '1', $cfg->({ 'containers.bootc' => '1', 'x' => 'y' }), $oci_cfg, 'layer-1', 'layer-22'),
    flatpak => push_raw('raw/flatpak', '1', $cfg->({ 'org.flatpak.ref' => 'app/org.example.A/x86_64/stable' }),
                        $oci_cfg, 'layer-333'),
    helm    => push_raw('raw/helm', '1', '{"name":"chart","version":"1.0.0"}',
                        'application/vnd.cncf.helm.config.v1+json', 'chart-4444'),
    noarch  => push_raw('raw/noarch', '1', '{"config":{"Labels":{"a":"b"}}}', $oci_cfg, 'layer-7'),
    broken  => push_raw('raw/broken', '1', '{"architecture": "amd64", "os": "linux", "config": {"Labels": {"a"',
                        $oci_cfg, 'layer-55555'),
    deep    => push_raw('raw/deep', '1', '{"architecture":"amd64","os":"linux","config":' . ('[' x 100000)
                        . (']' x 100000) . '}', $oci_cfg, 'layer-6'),
);
pull2("raw/$_:1") for sort keys %raw;

$u = unit_of($raw{bootc}{digest});
is_deeply(nature($u), { type => 'bootable', architecture => 'arm64', os => 'linux', compressed_image_size => sum(@{ $raw{bootc}{sizes} }),
                        is_bootable => JSON::PP::true, is_flatpak => JSON::PP::false },
          'label containers.bootc=1: type bootable, is_bootable');
is_deeply($u->{labels}, { 'containers.bootc' => '1', 'x' => 'y' }, '... its labels');
$u = unit_of($raw{flatpak}{digest});
is_deeply([ @$u{qw(type is_bootable is_flatpak)} ], [ 'flatpak', JSON::PP::false, JSON::PP::true ],
          'label org.flatpak.ref: type flatpak, is_flatpak');
$u = unit_of($raw{helm}{digest});
is_deeply([ @$u{qw(type architecture os compressed_image_size)} ], [ 'helm', undef, undef, 10 ],
          'a helm config: type helm, no platform');
$u = unit_of($raw{noarch}{digest});
is_deeply([ @$u{qw(type architecture os)}, $u->{labels} ], [ 'image', undef, undef, { a => 'b' } ],
          'a config with labels and no platform: its labels, architecture and os null');
for my $k (qw(broken deep)) {
    $u = unit_of($raw{$k}{digest});
    is_deeply([ @$u{qw(type architecture os)}, $u->{labels} ], [ 'image', undef, undef, {} ],
              "a $k config JSON: type image, its platform null");
    is($t2->get("/v2/n/raw/$k/blobs/$raw{$k}{config}")->{status}, 200, '... the blob served all the same');
}
is($t2->get("$MANIFESTS?limit=100")->{status}, 200, 'the manifest list renders them all');
$t2->check_error_log;

# after a restart, and for a record of an earlier release (no nature):
# null, {} and false
$t2->stop;
$t2->start;
is_deeply([ @{ unit_of($o->{digest}) }{qw(type architecture)} ], [ 'image', 'amd64' ], 'after a restart: the same');
$t2->stop;
{
    my $meta2 = $t2->store . '/meta';
    my $md = sprintf 'sha256:%064x', 42;
    open my $fh, '|-', "mdb_load -T -s manifests $meta2" or die "mdb_load: $!";
    print $fh "n/old/img\\00$md\n" . '\\01{"media_type":"application/vnd.oci.image.manifest.v1+json",'
        . qq("size":100,"created":"2026-01-01T00:00:00.000000Z","config":"$o->{config}",)
        . qq("blobs":["$o->{config}"],"manifests":[]}\n);
    close $fh or die "mdb_load failed ($?)\n";
    open $fh, '|-', "mdb_load -T -s manifest_units $meta2" or die "mdb_load: $!";
    print $fh "$md\n\\01\n";
    close $fh or die "mdb_load failed ($?)\n";
    open $fh, '|-', "mdb_load -T -s unit_holders $meta2" or die "mdb_load: $!";
    print $fh "m$md\\00n/old/img\n\\01\n";
    close $fh or die "mdb_load failed ($?)\n";
    $t2->start;
    $u = unit_of($md);
    is_deeply([ @$u{qw(type compressed_image_size annotations architecture)} ], [ undef, undef, {}, 'amd64' ],
              'a manifest record of an earlier release: type and size null, annotations {}, the config\'s platform');
}
$t2->stop;


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
